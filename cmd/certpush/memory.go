package main

import (
	"os"
	"runtime"
	"runtime/debug"
)

// defaultMemoryLimit (112 MiB) is the soft limit certpush gives the Go runtime
// when GOMEMLIMIT is not set. A push over a very large fleet holds about
// 1 KB a host (the host, its known_hosts line, its result) and makes
// several times that in short-lived garbage (dials, contexts, errors);
// without a limit the heap grows to twice what is live before each
// collection. With it, the collector runs earlier once the heap nears
// the limit. It is soft: a fleet that needs more gets more, at the cost
// of collections (at most about half the CPU, by the runtime's limiter).
const defaultMemoryLimit = 112 << 20

// loadGCPercent is the GOGC used while the config is read: parsing YAML
// builds a node tree several times the size of the hosts it yields, and
// most of its allocations are garbage by the end of the parse.
const loadGCPercent = 25

func init() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
}

// lowGC runs the garbage collector more often until the returned func is
// called, unless GOGC asks for less (or turns it off).
func lowGC() (restore func()) {
	old := debug.SetGCPercent(loadGCPercent)
	if old < 0 || old < loadGCPercent {
		debug.SetGCPercent(old)
		return func() {}
	}
	return func() {
		// One collection now that the parse's node tree is garbage: the
		// next heap goal is then set from what the config really holds,
		// not from a heap last marked while the tree was live (at 10,000
		// YAML hosts that let the plan grow the heap to twice 27 MB).
		runtime.GC()
		debug.SetGCPercent(old)
	}
}
