"""Feature definitions (offline and online side by side) and the online stores behind one interface."""
