"""Engines turn a `PipelineConfig` into (or out of) real infrastructure, behind one interface."""
