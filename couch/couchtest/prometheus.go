package couchtest

import (
	_ "embed"
	"net/http"
)

// promReply is GET /_node/_local/_prometheus as CouchDB 3.4.3 answered it, byte for
// byte (testdata/prometheus.txt, copied from couch/testdata), including its quirk: for
// 167 metrics "# HELP ..." and "# TYPE ..." share one line.
//
//go:embed testdata/prometheus.txt
var promReply []byte

// prometheus answers /_node/_local/_prometheus with the recorded reply and its
// Content-Type (text/plain; version=2.0).
func (n *Node) prometheus(w http.ResponseWriter, r *http.Request) (int, []byte, bool) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return methodNotAllowed("GET,HEAD")
	}
	w.Header().Set("Content-Type", "text/plain; version=2.0")
	return http.StatusOK, promReply, true
}
