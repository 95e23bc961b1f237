package couchtest

import (
	"net/http"

	"github.com/medic/couchwatch/couch"
)

// prometheus answers /_node/_local/_prometheus with the reply CouchDB 3.4.3 gave, byte
// for byte (couch/testdata/prometheus.txt) and its Content-Type (text/plain;
// version=2.0), quirk included: for 167 metrics the "# HELP" line ends with a bare CR,
// so "# TYPE" shares its line.
func (n *Node) prometheus(w http.ResponseWriter, r *http.Request) (int, []byte, bool) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return methodNotAllowed("GET,HEAD")
	}
	body, err := couch.Recorded("prometheus.txt")
	if err != nil {
		return http.StatusInternalServerError, []byte(bodyServerErr), true
	}
	w.Header().Set("Content-Type", "text/plain; version=2.0")
	return http.StatusOK, body, true
}
