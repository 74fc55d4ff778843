"""tinctd, the daemon the editor plugins talk to: the wire protocol (`protocol`, torch-free),
shared-memory pixels (`shm`), endpoints and keys (`endpoint`, `keys`), the connection guard
(`door`), memory admission (`admission`) and the daemon itself (`server`:
`python -m tinct.serve.server`)."""
