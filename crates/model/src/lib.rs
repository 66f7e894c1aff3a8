//! Transformer configs, MIL kernels, the trainer and generation. Filled in by the training work (issue 3).
