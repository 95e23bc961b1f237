package haproxy

import (
	"fmt"
	"strconv"
)

// Traffic is what HAProxy's own clients saw of one server, from "show stat": cumulative
// counters since HAProxy started (a reload or restart sets them back to zero) and two
// instantaneous figures. couchwatch reads it on every pass as a second signal beside
// its own probes: a server that answers /_up but fails real requests.
//
// Quirks of HAProxy 2.6: a 500 that "retry-on all-retryable-errors" (CHT's backend)
// retries is not counted in hrsp_5xx, only in wretr (and wredis when redispatched):
// count Retries as failed attempts. Handled here: the hrsp_* columns are empty on a server of a
// mode tcp backend (HTTP is then not Known); rtime is empty, not 0, before the first
// response; every column read may be missing on another version (zero, and HTTP not
// Known when any hrsp_* column is missing).
type Traffic struct {
	HTTP         bool  // the hrsp_* columns were present and filled (mode http)
	Responses    int64 // hrsp_1xx..hrsp_5xx + hrsp_other
	Resp5xx      int64 // hrsp_5xx
	RespErrors   int64 // eresp: responses that failed (reset, timeout, junk)
	ConnErrors   int64 // econ: connections to the server that failed
	Retries      int64 // wretr
	Redispatches int64 // wredis
	QueueCur     int   // qcur: requests queued for the server now
	RespTimeMs   int   // rtime: average response time of the last 1024 requests, ms
}

var hrspCols = []string{"hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other"}

// parseTraffic reads one "show stat" server row; cols maps column names to indices.
func parseTraffic(cols map[string]int, rec []string) (Traffic, error) {
	var t Traffic
	var err error
	field := func(col string) (string, bool) {
		i, ok := cols[col]
		if !ok || i >= len(rec) {
			return "", false
		}
		return rec[i], true
	}
	num := func(col string) int64 {
		s, ok := field(col)
		if !ok || s == "" || err != nil {
			return 0
		}
		v, perr := strconv.ParseInt(s, 10, 64)
		if perr != nil || v < 0 {
			err = fmt.Errorf("column %s: %q is not a counter", col, s)
			return 0
		}
		return v
	}
	t.HTTP = true
	for _, c := range hrspCols {
		if s, ok := field(c); !ok || s == "" {
			t.HTTP = false
		}
		t.Responses += num(c)
	}
	t.Resp5xx = num("hrsp_5xx")
	t.RespErrors = num("eresp")
	t.ConnErrors = num("econ")
	t.Retries = num("wretr")
	t.Redispatches = num("wredis")
	t.QueueCur = int(min(num("qcur"), 1<<31-1))
	t.RespTimeMs = int(min(num("rtime"), 1<<31-1))
	if err != nil {
		return Traffic{}, err
	}
	return t, nil
}
