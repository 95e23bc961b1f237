package couch

import "embed"

// recorded holds every reply recorded from a real CouchDB 3.4.3 cluster (testdata/README.md
// says how each was taken). couchtest serves them and the tests of other packages read them;
// the linker leaves them out of a binary that never calls Recorded, such as couchwatch.
//
//go:embed testdata/*.json testdata/prometheus.txt
var recorded embed.FS

// Recorded returns the body of one recorded CouchDB 3.4.3 reply by its file name under
// couch/testdata (e.g. "system_under_load.json"), for simulators and tests.
func Recorded(name string) ([]byte, error) {
	return recorded.ReadFile("testdata/" + name)
}
