"""Online side: embedded services, the Faust worker, Redis windows, replay and metrics."""
