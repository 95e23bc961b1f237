package couch

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wantReason(t *testing.T, err error, want Reason) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want reason %s", want)
	}
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("err %v (%T) is not a *couch.Error", err, err)
	}
	if ce.Reason != want {
		t.Fatalf("reason = %s, want %s (err: %v)", ce.Reason, want, err)
	}
}

func TestParseUp(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   Up
		reason Reason
	}{
		{name: "healthy fixture", status: 200, body: "up_healthy.json", want: Up{StatusOK, 200}},
		{name: "maintenance fixture", status: 404, body: "up_maintenance_mode_true.json", want: Up{StatusMaintenanceMode, 404}},
		{name: "nolb fixture", status: 404, body: "up_maintenance_mode_nolb.json", want: Up{StatusNoLB, 404}},
		{name: "seeding", status: 404, body: `{"status":"seeding"}`, want: Up{StatusSeeding, 404}},
		{name: "require_valid_user 401 fixture", status: 401, body: "up_require_valid_user_401.json", reason: ReasonAuth},
		{name: "403", status: 403, body: `{"error":"forbidden"}`, reason: ReasonAuth},
		{name: "500", status: 500, body: `{"error":"unknown_error"}`, reason: ReasonHTTP5xx},
		{name: "503 empty", status: 503, body: ``, reason: ReasonHTTP5xx},
		{name: "404 not CouchDB", status: 404, body: `{"error":"not_found","reason":"missing"}`, reason: ReasonHTTP4xx},
		{name: "404 html", status: 404, body: `<html>`, reason: ReasonHTTP4xx},
		{name: "404 unknown status", status: 404, body: `{"status":"ok"}`, reason: ReasonHTTP4xx},
		{name: "400", status: 400, body: `{}`, reason: ReasonHTTP4xx},
		{name: "302", status: 302, body: ``, reason: ReasonRedirect},
		{name: "http to a TLS port (Go)", status: 400, body: "Client sent an HTTP request to an HTTPS server.\n", reason: ReasonProtocol},
		{name: "http to a TLS port (nginx)", status: 400, body: "<html><center>The plain HTTP request was sent to HTTPS port</center></html>", reason: ReasonProtocol},
		{name: "200 truncated", status: 200, body: `{"status":"o`, reason: ReasonMalformed},
		{name: "200 empty", status: 200, body: ``, reason: ReasonMalformed},
		{name: "200 no status", status: 200, body: `{"seeds":{}}`, reason: ReasonMalformed},
		{name: "200 status not a string", status: 200, body: `{"status":1}`, reason: ReasonMalformed},
		{name: "200 maintenance status", status: 200, body: `{"status":"nolb"}`, reason: ReasonMalformed},
		{name: "200 trailing garbage", status: 200, body: `{"status":"ok"}x`, reason: ReasonMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := []byte(tc.body)
			if strings.HasSuffix(tc.body, ".json") {
				body = fixture(t, tc.body)
			}
			got, err := ParseUp(tc.status, bytes.NewReader(body))
			if tc.reason != "" {
				wantReason(t, err, tc.reason)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseMembership(t *testing.T) {
	three := []string{"couchdb1@127.0.0.1", "couchdb2@127.0.0.1", "couchdb3@127.0.0.1"}
	tests := []struct {
		name      string
		body      string
		all, memb []string
		reason    Reason
	}{
		{name: "healthy", body: "membership_healthy.json", all: three, memb: three},
		{name: "node3 stopped", body: "membership_node3_stopped_via_node1.json", all: three[:2], memb: three},
		{name: "empty lists", body: `{"all_nodes":[],"cluster_nodes":[]}`, all: []string{}, memb: []string{}},
		{name: "401 body", body: "membership_unauthenticated_401.json", reason: ReasonMalformed},
		{name: "no all_nodes", body: `{"cluster_nodes":["a"]}`, reason: ReasonMalformed},
		{name: "wrong type", body: `{"all_nodes":"a","cluster_nodes":[]}`, reason: ReasonMalformed},
		{name: "array", body: `[]`, reason: ReasonMalformed},
		{name: "truncated", body: `{"all_nodes":["a"`, reason: ReasonMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := []byte(tc.body)
			if strings.HasSuffix(tc.body, ".json") {
				body = fixture(t, tc.body)
			}
			got, err := ParseMembership(bytes.NewReader(body))
			if tc.reason != "" {
				wantReason(t, err, tc.reason)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got.AllNodes, ",") != strings.Join(tc.all, ",") ||
				strings.Join(got.ClusterNodes, ",") != strings.Join(tc.memb, ",") {
				t.Fatalf("got %+v, want all %v cluster %v", got, tc.all, tc.memb)
			}
		})
	}
}

func TestParseSystem(t *testing.T) {
	type want struct {
		runQueue, dirty, osProc, procs int64
		queues                         map[string]int64
	}
	tests := []struct {
		name   string
		body   string
		want   want
		reason Reason
	}{
		{name: "idle", body: "system_idle.json", want: want{0, 0, 0, -1, map[string]int64{
			"couch_server": 0, "rexi_server": 0, "rexi_buffer": 0, "couch_file_p99": 0, "couch_file_max": 0}}},
		{name: "under load", body: "system_under_load.json", want: want{28, 0, 5, 730, map[string]int64{
			"couch_server": 0, "couch_file_p99": 2, "couch_file_max": 2, "couch_db_updater_p99": 3, "couch_db_updater_max": 3}}},
		{name: "under load node2", body: "system_under_load_node2.json", want: want{24, 0, 5, -1, map[string]int64{
			"couch_file_p99": 4, "couch_file_max": 4, "couch_db_updater_p99": 1, "couch_passwords_cache_lru": 1}}},
		{name: "idle peer", body: "system_idle_peer_node1_during_node2_load.json", want: want{0, 0, 0, -1, map[string]int64{
			"couch_file_p99": 0}}},
		{name: "remote node2", body: "system_remote_node2_via_node1.json", want: want{0, 0, 0, -1, nil}},
		{name: "minimal", body: `{"run_queue":3}`, want: want{3, 0, 0, 0, nil}},
		{name: "float and odd queue values", body: `{"run_queue":2.7,"message_queues":{"a":null,"b":"x","c":{"99":1.5},"d":7}}`,
			want: want{2, 0, 0, 0, map[string]int64{"c_p99": 1, "c_max": 0, "d": 7}}},
		{name: "overflowing run_queue", body: `{"run_queue":1e300}`, reason: ReasonMalformed},
		{name: "run_queue past int64", body: `{"run_queue":9223372036854775808}`, reason: ReasonMalformed},
		{name: "absurd run_queue", body: `{"run_queue":4294967297}`, reason: ReasonMalformed},
		{name: "negative run_queue", body: `{"run_queue":-1}`, reason: ReasonMalformed},
		{name: "overflowing queue", body: `{"run_queue":1,"message_queues":{"couch_server":1e19}}`, reason: ReasonMalformed},
		{name: "overflowing histogram", body: `{"run_queue":1,"message_queues":{"couch_file":{"99":1e30}}}`, reason: ReasonMalformed},
		{name: "412 nodedown", body: "system_stopped_node3_via_node1.json", reason: ReasonMalformed},
		{name: "no run_queue", body: `{"uptime":1}`, reason: ReasonMalformed},
		{name: "run_queue string", body: `{"run_queue":"1"}`, reason: ReasonMalformed},
		{name: "message_queues array", body: `{"run_queue":1,"message_queues":[]}`, reason: ReasonMalformed},
		{name: "null", body: `null`, reason: ReasonMalformed},
		{name: "truncated", body: `{"run_queue":1,"mess`, reason: ReasonMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := []byte(tc.body)
			if strings.HasSuffix(tc.body, ".json") {
				body = fixture(t, tc.body)
			}
			got, err := ParseSystem(bytes.NewReader(body))
			if tc.reason != "" {
				wantReason(t, err, tc.reason)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.RunQueue != tc.want.runQueue || got.RunQueueDirtyCPU != tc.want.dirty || got.OSProcCount != tc.want.osProc {
				t.Fatalf("got run_queue %d dirty %d os_proc %d, want %+v", got.RunQueue, got.RunQueueDirtyCPU, got.OSProcCount, tc.want)
			}
			if tc.want.procs >= 0 && got.ProcessCount != tc.want.procs {
				t.Fatalf("process_count = %d, want %d", got.ProcessCount, tc.want.procs)
			}
			for k, v := range tc.want.queues {
				if g, ok := got.MessageQueues[k]; !ok || g != v {
					t.Errorf("message_queues[%s] = %d (present %v), want %d", k, g, ok, v)
				}
			}
		})
	}
}

func TestParseSystemMemory(t *testing.T) {
	got, err := ParseSystem(bytes.NewReader(fixture(t, "system_under_load.json")))
	if err != nil {
		t.Fatal(err)
	}
	if got.Memory["processes"] != 38290536 || got.Uptime != 73 {
		t.Fatalf("memory.processes = %d, uptime = %d", got.Memory["processes"], got.Uptime)
	}
	if _, ok := got.MessageQueues["couch_file"]; ok {
		t.Fatal("histogram couch_file stored under its bare name")
	}
}

func TestParseActiveTasks(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		types  map[string]int
		reason Reason
	}{
		{name: "idle", body: "active_tasks_idle.json", types: map[string]int{}},
		{name: "view build", body: "active_tasks_view_build.json", types: map[string]int{"indexer": 5, "view_compaction": 1}},
		{name: "db compaction", body: "active_tasks_db_compaction.json", types: map[string]int{"database_compaction": 4}},
		{name: "replication", body: "active_tasks_replication.json", types: map[string]int{"replication": 1}},
		{name: "object", body: `{}`, reason: ReasonMalformed},
		{name: "null", body: `null`, reason: ReasonMalformed},
		{name: "element not object", body: `[1]`, reason: ReasonMalformed},
		{name: "truncated", body: `[{"type":"indexer"`, reason: ReasonMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := []byte(tc.body)
			if strings.HasSuffix(tc.body, ".json") {
				body = fixture(t, tc.body)
			}
			got, err := ParseActiveTasks(bytes.NewReader(body))
			if tc.reason != "" {
				wantReason(t, err, tc.reason)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			count := map[string]int{}
			for _, task := range got {
				count[task.Type]++
				if task.Node != "couchdb1@127.0.0.1" || task.Database == "" {
					t.Errorf("task %+v: want node couchdb1@127.0.0.1 and a database", task)
				}
			}
			if len(count) != len(tc.types) {
				t.Fatalf("types %v, want %v", count, tc.types)
			}
			for k, v := range tc.types {
				if count[k] != v {
					t.Fatalf("types %v, want %v", count, tc.types)
				}
			}
		})
	}
	got, err := ParseActiveTasks(bytes.NewReader(fixture(t, "active_tasks_db_compaction.json")))
	if err != nil || got[0].Progress != 70 {
		t.Fatalf("first compaction task %+v, err %v: want progress 70", got, err)
	}
}

func fuzzSeeds(f *testing.F, names ...string) {
	for _, n := range names {
		f.Add(fixture(f, n))
	}
}

func FuzzParseUp(f *testing.F) {
	for _, n := range []string{"up_healthy.json", "up_maintenance_mode_true.json", "up_maintenance_mode_nolb.json", "up_require_valid_user_401.json"} {
		for _, st := range []int{200, 404, 401} {
			f.Add(st, fixture(f, n))
		}
	}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		up, err := ParseUp(status, bytes.NewReader(body))
		if err == nil && up.HTTPStatus != status {
			t.Fatalf("HTTPStatus %d for status %d", up.HTTPStatus, status)
		}
		if err != nil && Classify(err) == "" {
			t.Fatal("error without reason")
		}
	})
}

func FuzzParseMembership(f *testing.F) {
	fuzzSeeds(f, "membership_healthy.json", "membership_node3_stopped_via_node1.json", "membership_unauthenticated_401.json")
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := ParseMembership(bytes.NewReader(body))
		if err == nil && (m.AllNodes == nil || m.ClusterNodes == nil) {
			t.Fatal("nil lists without error")
		}
	})
}

func FuzzParseSystem(f *testing.F) {
	fuzzSeeds(f, "system_idle.json", "system_under_load.json", "system_under_load_node2.json", "system_stopped_node3_via_node1.json")
	f.Fuzz(func(t *testing.T, body []byte) {
		_, err := ParseSystem(bytes.NewReader(body))
		if err != nil && Classify(err) != ReasonMalformed {
			t.Fatalf("reason %s, want malformed", Classify(err))
		}
	})
}

func FuzzParseActiveTasks(f *testing.F) {
	fuzzSeeds(f, "active_tasks_idle.json", "active_tasks_view_build.json", "active_tasks_db_compaction.json", "active_tasks_replication.json")
	f.Fuzz(func(t *testing.T, body []byte) {
		_, err := ParseActiveTasks(bytes.NewReader(body))
		if err != nil && Classify(err) != ReasonMalformed {
			t.Fatalf("reason %s, want malformed", Classify(err))
		}
	})
}

// lastField is an independent reading of a top-level object member with encoding/json's
// token stream: the last key equal to key under case folding wins, as it does for a
// struct field. ok is false when the document is not an object or has no such key.
func lastField(t *testing.T, b []byte, key string) (raw json.RawMessage, ok bool) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, false
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("parser accepted what encoding/json's tokenizer rejects: %v: %q", err, b)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("parser accepted what encoding/json's tokenizer rejects: %v: %q", err, b)
		}
		if k, _ := tok.(string); strings.EqualFold(k, key) {
			raw, ok = v, true
		}
	}
	return raw, ok
}

// Differential: run_queue as ParseSystem reads it is the integer an independent reading
// of the same document gives, and an accepted document is valid JSON.
func FuzzParseSystemMatchesEncodingJSON(f *testing.F) {
	fuzzSeeds(f, "system_idle.json", "system_under_load.json", "system_under_load_node2.json")
	f.Add([]byte(`{"run_queue":3,"run_queue":4,"message_queues":{"a":{"99":2,"max":"x"},"b":1}}`))
	f.Add([]byte(`{"run_queue":3,"RUN_QUEUE":5}`))
	f.Add([]byte(`{"run_queue":1e300}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := parseSystem(b)
		if err != nil {
			return
		}
		if !json.Valid(b) {
			t.Fatalf("accepted invalid JSON %q", b)
		}
		raw, ok := lastField(t, b, "run_queue")
		if !ok {
			t.Fatalf("run_queue accepted but absent to encoding/json: %q", b)
		}
		var f float64
		if err := json.Unmarshal(raw, &f); err != nil || f < 0 || f > MaxCount || int64(f) != got.RunQueue {
			t.Fatalf("run_queue = %d, encoding/json reads %s (%v)", got.RunQueue, raw, err)
		}
	})
}

func FuzzParseMembershipMatchesEncodingJSON(f *testing.F) {
	fuzzSeeds(f, "membership_healthy.json", "membership_node3_stopped_via_node1.json")
	f.Add([]byte(`{"all_nodes":["a\u0040b","c"],"cluster_nodes":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := parseMembership(b)
		if err != nil {
			return
		}
		var all, cluster []string
		rawAll, ok1 := lastField(t, b, "all_nodes")
		rawCluster, ok2 := lastField(t, b, "cluster_nodes")
		if !ok1 || !ok2 || json.Unmarshal(rawAll, &all) != nil || json.Unmarshal(rawCluster, &cluster) != nil {
			t.Fatalf("accepted lists encoding/json cannot read: %q", b)
		}
		if !slices.Equal(all, got.AllNodes) || !slices.Equal(cluster, got.ClusterNodes) {
			t.Fatalf("got %q / %q, encoding/json %q / %q", got.AllNodes, got.ClusterNodes, all, cluster)
		}
	})
}
