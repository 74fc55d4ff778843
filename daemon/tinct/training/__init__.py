"""Training and evaluating the learned engine: data (`data`), the training loop (`train`),
the evaluation protocol (`measure`) and the report (`evaluate`)."""
