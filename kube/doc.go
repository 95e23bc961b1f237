// Package kube steers the Kubernetes scheduler away from hosts whose CouchDB
// is saturated, and tells operators.
//
// CouchDB pods are pinned to hosts with local storage and are never moved.
// When a CouchDB stays Degraded past a sustain time, the leader replica flags
// the Kubernetes node it runs on: a PreferNoSchedule taint, a label, a node
// condition and Events, all under a configurable key prefix. Flags are cleared
// after a cool-down below a lower threshold. Optionally one stateless pod per
// cycle is evicted from a flagged node through the Eviction API.
//
// Several CHT instances (one namespace each) may share a cluster and its
// hosts. Each flag is owned per instance: an owner label
// <prefix>/flagged-by.<instance> records which instance needs it, and the
// shared marks (taint, label, condition) stay while any owner remains. An
// instance only ever adds or removes its own owner label, and clears the
// shared marks only when it was the last owner; every write is guarded by the
// node's resourceVersion, so two instances never undo each other.
//
// Only the holder of a Lease writes to the cluster; every replica keeps
// tracking load so a new leader starts with full history.
package kube
