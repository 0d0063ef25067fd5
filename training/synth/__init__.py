"""The built-in synthetic city: a POI-bearing map, a population with planted routines, and YJMob-schema output."""
