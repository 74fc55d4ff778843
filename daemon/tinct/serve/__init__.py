"""tinctd, the daemon the editor plugins talk to (`tinctd`, or `python -m tinct.serve`).

The wire: `protocol` (torch-free), `shm` (shared-memory pixels), `endpoint` and `keys` (where it
listens and who may connect), `door` (the connection guard).  The daemon: `daemon` (the socket
loop), `worker` (the thread that runs jobs), `job` (one job: decode → run → encode), `admission`
(memory), `warmup` (engines started, `--check`), `state` (lock and log), `main` (arguments)."""
