package couchtest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Path classes, as counted in Stats.
const (
	classUp = iota
	classMembership
	classSystem
	classActiveTasks
	classConfig
	classNodeInfo
	classSession
	classData
)

const (
	serverHeader  = "CouchDB/3.4.3 (Erlang OTP/25)"
	bodyAuthReq   = `{"error":"unauthorized","reason":"Authentication required."}` + "\n"
	bodyBadLogin  = `{"error":"unauthorized","reason":"Name or password is incorrect."}` + "\n"
	bodyServerErr = `{"error":"unknown_error","reason":"badarg","ref":1234567890}` + "\n"
)

func classOf(path string) int {
	switch {
	case path == "/_up":
		return classUp
	case path == "/_membership":
		return classMembership
	case path == "/_session":
		return classSession
	case path == "/_active_tasks":
		return classActiveTasks
	case strings.HasPrefix(path, "/_node/"):
		rest := strings.SplitN(strings.TrimPrefix(path, "/_node/"), "/", 3)
		switch {
		case len(rest) == 1:
			return classNodeInfo
		case rest[1] == "_system":
			return classSystem
		case rest[1] == "_config":
			return classConfig
		}
	}
	return classData
}

func (n *Node) count(class int) {
	s := &n.stats
	c := [...]*atomic.Int64{classUp: &s.up, classMembership: &s.membership, classSystem: &s.system,
		classActiveTasks: &s.activeTasks, classConfig: &s.config, classNodeInfo: &s.nodeInfo,
		classSession: &s.session, classData: &s.data}
	c[class].Add(1)
}

// ServeHTTP answers like CouchDB 3.4.3 with require_valid_user = true.
func (n *Node) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	class := classOf(r.URL.Path)
	n.count(class)
	if !n.gate(ctx) { // hung: accept, read, never answer
		return
	}
	// Checking credentials reads the admin's _users doc: it waits while the node
	// holding that shard hangs (faithful.go). Unauthenticated requests do not.
	if credentialed(r, class) && !n.waitUsersShard(ctx) {
		return
	}
	if class == classSession && r.Method == http.MethodPost {
		n.login(w, r)
		return
	}
	if !n.authorized(r) && !n.upWithoutAuth(r, class) {
		n.stats.unauthorized.Add(1)
		n.reply(ctx, w, http.StatusUnauthorized, []byte(bodyAuthReq), 0)
		return
	}
	set := n.settings()
	delay := set.latency
	if class == classData {
		inflight := n.stats.inFlight.Add(1)
		defer n.stats.inFlight.Add(-1)
		delay += set.perInflight * time.Duration(inflight)
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
	}
	status, body, handled := n.routeMore(w, r)
	extra, ok := time.Duration(0), true
	if !handled {
		status, body, extra, ok = n.route(r, class, set)
	}
	if !ok {
		return // the client left while the call waited on a hung peer
	}
	delay += extra
	if !handled && class == classData && n.failData() {
		status, body = http.StatusInternalServerError, []byte(bodyServerErr)
	}
	switch set.fault {
	case Fault5xx:
		status, body = http.StatusInternalServerError, []byte(bodyServerErr)
	case FaultMalformed:
		status, body = http.StatusOK, body[:len(body)/2]
	case FaultOversized:
		status, body = http.StatusOK, oversized()
	}
	n.reply(ctx, w, status, body, delay)
}

// upWithoutAuth: with chttpd/require_valid_user_except_for_up = true, /_up answers
// requests that carry no credentials.
func (n *Node) upWithoutAuth(r *http.Request, class int) bool {
	if class != classUp || credentialed(r, class) {
		return false
	}
	v, _ := n.c.configValue("chttpd", "require_valid_user_except_for_up")
	return v == "true"
}

// route answers an authorized request: status, body, extra latency, and false when the
// client left while the call waited.
func (n *Node) route(r *http.Request, class int, set settings) (int, []byte, time.Duration, bool) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead && class != classData {
		return http.StatusMethodNotAllowed, []byte(`{"error":"method_not_allowed","reason":"Only GET,HEAD allowed"}` + "\n"), 0, true
	}
	switch class {
	case classUp:
		switch set.maintenance {
		case "true":
			return http.StatusNotFound, []byte(`{"status":"maintenance_mode"}` + "\n"), 0, true
		case "nolb":
			return http.StatusNotFound, []byte(`{"status":"nolb"}` + "\n"), 0, true
		}
		return http.StatusOK, []byte(`{"status":"ok","seeds":{}}` + "\n"), n.upDelay(set.load), true
	case classMembership:
		all, members := n.c.membership(n, time.Now())
		return http.StatusOK, mustJSON(map[string][]string{"all_nodes": all, "cluster_nodes": members}), 0, true
	case classSession:
		return http.StatusOK, mustJSON(map[string]any{"ok": true,
			"userCtx": map[string]any{"name": n.c.opt.User, "roles": []string{"_admin"}},
			"info":    map[string]any{"authentication_handlers": []string{"cookie", "default"}}}), 0, true
	case classActiveTasks:
		body, ok := n.clusterTasks(r.Context())
		return http.StatusOK, body, 0, ok
	case classSystem:
		if target := nodeTarget(r.URL.Path); target == "_local" || target == n.name {
			body, d := n.systemBody(set)
			return http.StatusOK, body, d, true
		}
		status, body := n.routeNode(r, class, set)
		return status, body, 0, true
	case classNodeInfo, classConfig:
		status, body := n.routeNode(r, class, set)
		return status, body, 0, true
	}
	if owner := n.c.docShard(r.URL.Path); owner != nil && r.Method == http.MethodGet && owner.Maintenance() == "true" {
		// n=1: the document's only shard is on a node in maintenance_mode = true.
		// (The body's reason text was not recorded; the error is.)
		return http.StatusInternalServerError, mustJSON(map[string]string{"error": "read_failure",
			"reason": owner.name + " in maintenance_mode"}), 0, true
	}
	return http.StatusOK, mustJSON(map[string]string{"ok": "true", "node": n.name, "method": r.Method, "path": r.URL.Path}), 0, true
}

func nodeTarget(path string) string {
	target, _, _ := strings.Cut(strings.TrimPrefix(path, "/_node/"), "/")
	return target
}

// routeNode answers /_node/<name>[/...] for _local and the node's own name; a peer's
// _system is proxied like CouchDB does (412 nodedown when the peer is down).
func (n *Node) routeNode(r *http.Request, class int, set settings) (int, []byte) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/_node/"), "/")
	target := parts[0]
	if target != "_local" && target != n.name {
		peer := n.c.byName(target)
		if peer == nil || class != classSystem {
			return http.StatusNotFound, []byte(`{"error":"not_found","reason":"missing"}` + "\n")
		}
		if !peer.visibleToPeers(time.Now(), n.c.opt.NetTickTime) || peer.Maintenance() == "true" {
			return http.StatusPreconditionFailed, mustJSON(map[string]string{"error": "nodedown", "reason": peer.name + " is down"})
		}
		if !peer.gate(r.Context()) {
			return http.StatusPreconditionFailed, mustJSON(map[string]string{"error": "nodedown", "reason": peer.name + " is down"})
		}
		return http.StatusOK, peer.settings().system
	}
	switch class {
	case classNodeInfo:
		return http.StatusOK, mustJSON(map[string]string{"name": n.name})
	case classSystem:
		return http.StatusOK, set.system
	}
	// classConfig: /_node/x/_config/<section>/<key>
	if len(parts) != 4 {
		return http.StatusNotFound, []byte(`{"error":"not_found","reason":"unknown_config_value"}` + "\n")
	}
	section, key := parts[2], parts[3]
	if section == "couchdb" && key == "maintenance_mode" {
		if set.maintenance == "" {
			return http.StatusOK, []byte(`"false"` + "\n")
		}
		return http.StatusOK, mustJSON(set.maintenance)
	}
	v, ok := n.c.configValue(section, key)
	if !ok {
		return http.StatusNotFound, []byte(`{"error":"not_found","reason":"unknown_config_value"}` + "\n")
	}
	return http.StatusOK, mustJSON(v)
}

// authorized accepts Basic auth with the admin's credentials or a valid AuthSession.
func (n *Node) authorized(r *http.Request) bool {
	if user, pass, ok := r.BasicAuth(); ok {
		n.stats.basicAuth.Add(1)
		return user == n.c.opt.User && pass == n.c.opt.Password
	}
	if c, err := r.Cookie("AuthSession"); err == nil {
		return n.c.validSession(c.Value)
	}
	return false
}

// login answers POST /_session (JSON or form body).
func (n *Node) login(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var creds struct {
		Name     string `json:"name"`
		Password string `json:"password"`
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		r.Body = io.NopCloser(bytes.NewReader(body))
		if err := r.ParseForm(); err == nil {
			creds.Name, creds.Password = r.PostForm.Get("name"), r.PostForm.Get("password")
		}
	} else {
		_ = json.Unmarshal(body, &creds)
	}
	if creds.Name != n.c.opt.User || creds.Password != n.c.opt.Password {
		n.stats.unauthorized.Add(1)
		n.reply(ctx, w, http.StatusUnauthorized, []byte(bodyBadLogin), 0)
		return
	}
	token, err := n.c.newSession()
	if err != nil {
		n.reply(ctx, w, http.StatusInternalServerError, []byte(bodyServerErr), 0)
		return
	}
	n.stats.logins.Add(1)
	w.Header().Set("Set-Cookie", "AuthSession="+token+"; Version=1; Path=/; HttpOnly")
	n.reply(ctx, w, http.StatusOK, mustJSON(map[string]any{"ok": true, "name": n.c.opt.User, "roles": []string{"_admin"}}), 0)
}

// reply waits out the latency (and any hang), then writes CouchDB's headers and body.
func (n *Node) reply(ctx context.Context, w http.ResponseWriter, status int, body []byte, delay time.Duration) {
	if !n.sleep(ctx, delay) || !n.gate(ctx) {
		return
	}
	h := w.Header()
	h.Set("Server", serverHeader)
	h.Set("Cache-Control", "must-revalidate")
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/json")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-CouchDB-Body-Time", "0")
	if id, err := randomHex(5); err == nil {
		h.Set("X-Couch-Request-ID", id)
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func oversized() []byte {
	b := bytes.Repeat([]byte("x"), OversizedBody)
	copy(b, `{"pad":"`)
	copy(b[len(b)-3:], "\"}\n")
	return b
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil { // only maps of strings and slices are passed in
		return []byte(`{"error":"internal","reason":"encode"}` + "\n")
	}
	return append(b, '\n')
}
