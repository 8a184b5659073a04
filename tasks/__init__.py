"""Luigi tasks of the MNIST pipeline. Entry point: ``luigi --module tasks RunPipeline``."""
