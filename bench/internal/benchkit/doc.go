// Package benchkit holds what the benchmarks under bench/ share: building and running
// the couchwatch binary as a subprocess, reading a process's CPU time and RSS from
// /proc, reading HAProxy's server states quickly, a bounded open-loop HTTP load
// generator, small statistics helpers and Markdown tables.
//
// Everything listens on and talks to 127.0.0.1 only, and every loop is bounded in
// count and in time.
package benchkit
