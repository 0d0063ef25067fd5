"""Model code and the feature definitions shared by offline training and the online stream.

`models` imports neither `stream` nor `training`: both depend on it, so the time model (slots),
the grid, the flow definition and feature encodings live here, in one place.
"""
