"""The local AWS emulator: moto server, spec applier, Lambda dispatch, event-source emulation."""
