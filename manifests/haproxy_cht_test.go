package manifests_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const chtHAProxyCfg = "testdata/cht/cht-haproxy-3node.cfg"

// chtHAProxyConfig writes CHT's real HAProxy configuration into dir, changed only where
// it names things outside this machine: its /usr/local/etc/haproxy files (error pages as
// CHT ships them, and stand-ins for its two Lua scripts, which are not in the fixtures,
// registering the same fetch names), the CouchDB and agent addresses (unreachable
// loopback ports: health checks fail, which changes nothing here). It returns the file and
// the environment CHT's config reads ($HAPROXY_IP, $HAPROXY_PORT, $COUCHDB_USER, ...).
func chtHAProxyConfig(t *testing.T, dir string) (string, []string) {
	t.Helper()
	etc := filepath.Join(dir, "etc")
	if err := os.MkdirAll(filepath.Join(etc, "errors"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := string(readFile(t, chtHAProxyCfg))
	for _, m := range regexp.MustCompile(`errorfile (\d+) /usr/local/etc/haproxy/(errors/\S+)`).FindAllStringSubmatch(cfg, -1) {
		body := fmt.Sprintf("HTTP/1.0 %s couchwatch-test\r\nContent-Type: application/json\r\nCache-Control: no-cache\r\n\r\n{\"code\":%s}\n", m[1], m[1])
		writeTestFile(t, filepath.Join(etc, m[2]), body)
	}
	for _, m := range regexp.MustCompile(`lua-load-per-thread /usr/local/etc/haproxy/(\S+)`).FindAllStringSubmatch(cfg, -1) {
		// parse_basic.lua -> parseBasic, parse_cookie.lua -> parseCookie.
		name := strings.TrimSuffix(m[1], ".lua")
		parts := strings.Split(name, "_")
		fetch := parts[0] + strings.ToUpper(parts[1][:1]) + parts[1][1:]
		writeTestFile(t, filepath.Join(etc, m[1]), fmt.Sprintf("-- stand-in for CHT's %s\ncore.register_fetches(%q, function(txn) return \"\" end)\n", m[1], fetch))
	}
	if !strings.Contains(cfg, "lua.parseBasic") || !strings.Contains(cfg, "lua.parseCookie") {
		t.Fatalf("%s no longer uses the Lua fetches the stand-ins register", chtHAProxyCfg)
	}
	cfg = strings.ReplaceAll(cfg, "/usr/local/etc/haproxy/", etc+"/")
	servers := regexp.MustCompile(`(?m)^(  server \S+ )\S+:5984( .*agent-addr )\S+( agent-port )\d+$`)
	if n := len(servers.FindAllString(cfg, -1)); n != 3 {
		t.Fatalf("%s: %d server lines, want 3", chtHAProxyCfg, n)
	}
	cfg = servers.ReplaceAllString(cfg, "${1}127.0.0.1:1${2}127.0.0.1${3}1")
	path := filepath.Join(dir, "cht-haproxy.cfg")
	writeTestFile(t, path, cfg)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return path, []string{"HAPROXY_IP=127.0.0.1", fmt.Sprintf("HAPROXY_PORT=%d", port), "COUCHDB_USER=medic", "COUCHDB_PASSWORD=manifests-test"}
}

// TestHAProxyCheckCHTConfigWithCouchwatch: "haproxy -c" accepts CHT's real configuration
// followed by couchwatch.cfg (the second global section merges into the first), and the
// result has the admin socket.
func TestHAProxyCheckCHTConfigWithCouchwatch(t *testing.T) {
	hap := tool(t, "haproxy", "/usr/sbin")
	dir := t.TempDir()
	chtCfg, env := chtHAProxyConfig(t, dir)
	cwCfg := filepath.Join(dir, "couchwatch.cfg")
	writeTestFile(t, cwCfg, strings.ReplaceAll(string(readFile(t, haproxyCfgFile)), "/run/haproxy/", dir+"/"))
	for name, args := range map[string][]string{
		"CHT alone":            {"-c", "-n", "1000", "-f", chtCfg},
		"CHT with couchwatch":  {"-c", "-n", "1000", "-f", chtCfg, "-f", cwCfg},
		"Compose copy as well": {"-c", "-n", "1000", "-f", chtCfg, "-f", genComposeCfg},
	} {
		cmd := exec.CommandContext(t.Context(), hap, args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Configuration file is valid") {
			t.Errorf("%s: haproxy %v: %v\n%s", name, args, err, out)
		}
	}
}
