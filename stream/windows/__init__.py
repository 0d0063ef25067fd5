"""Event-time windows: pure slot/watermark maths, per-slot flows, and the WindowStore that keeps them."""
