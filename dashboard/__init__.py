"""The Streamlit dashboard: reads the stream's Redis state; never writes it."""
