"""The pipeline as infrastructure: configuration, the pure resource spec, and the Pulumi program."""
