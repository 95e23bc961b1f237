package main

import (
	"context"
	"io"
)

// scenario is one row group of the report. Run sets up its own cluster, HAProxy and
// couchwatch, and tears them down.
type scenario struct {
	Name string
	Run  func(ctx context.Context, cfg config, bin string, progress io.Writer) (section, error)
}

// scenarios is the list the run goes through, in order. Each file adds its own:
// realcouch.go the faults of issue 9 (auth-coupled hang, spiky load), safety.go the
// correlated-fault rows (a request in flight to a hanging node, ...).
func scenarios() []scenario {
	return append(realCouchScenarios(), safetyScenarios()...)
}
