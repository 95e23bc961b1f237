package couchtest

import (
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
)

// putMaintenance answers PUT /_node/_local/_config/couchdb/maintenance_mode like
// CouchDB: the body is a JSON string, the reply is the value it replaces (a JSON
// string), a gzip-compressed body accepted as CouchDB does. "true" and "nolb" put the node in maintenance at once (/_up answers 404),
// "false" or "" take it out.
func (n *Node) putMaintenance(r *http.Request) (int, []byte, bool) {
	var in io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" { // kivik compresses request bodies; CouchDB accepts that
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return http.StatusBadRequest, []byte(`{"error":"bad_request","reason":"invalid gzip"}` + "\n"), true
		}
		defer zr.Close()
		in = zr
	}
	body, _ := io.ReadAll(io.LimitReader(in, 64<<10))
	var v string
	if err := json.Unmarshal(body, &v); err != nil {
		return http.StatusBadRequest, []byte(`{"error":"bad_request","reason":"invalid UTF-8 JSON"}` + "\n"), true
	}
	old := n.settings().maintenance
	if old == "" {
		old = "false"
	}
	if v == "false" {
		v = ""
	}
	if err := n.SetMaintenance(v); err != nil {
		return http.StatusBadRequest, mustJSON(map[string]string{"error": "bad_request", "reason": err.Error()}), true
	}
	return http.StatusOK, mustJSON(old), true
}
