//! Berth's inference router (the data path): key and token auth, traffic split, per-replica
//! concurrency slots, queue wait, timeouts and retries. It arrives with online endpoints;
//! until then `berth server`'s scoring listener answers 404 for every endpoint.
