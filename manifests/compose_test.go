package manifests_test

// The Compose overrides against CHT's real Compose files (testdata/cht), checked with
// Debian's docker-compose the way CHT's upgrade service uses them: it lists the files of
// the folder it mounts at /docker-compose in alphabetical order, validates each alone with
// "compose config" (skipping, silently, one that fails) and runs "up" on the rest.

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

func dockerCompose(t *testing.T) string {
	t.Helper()
	return tool(t, "docker-compose", "/usr/bin")
}

// chtComposeSite makes a CHT Compose folder with CHT's two files.
func chtComposeSite(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "compose")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for src, dst := range map[string]string{
		"testdata/cht/compose-cht-core.yml":              "cht-core.yml",
		"testdata/cht/compose-cht-couchdb-clustered.yml": "cht-couchdb-clustered.yml",
	} {
		if err := os.WriteFile(filepath.Join(dir, dst), readFile(t, src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// composeConfig runs "docker-compose -f f1 -f f2 ... config" in dir and returns the
// resolved model, or the error output.
func composeConfig(t *testing.T, dir string, files ...string) (map[string]any, string, bool) {
	t.Helper()
	args := []string{"-p", "cht"}
	for _, f := range files {
		args = append(args, "-f", f)
	}
	cmd := exec.CommandContext(t.Context(), dockerCompose(t), append(args, "config")...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "COUCHDB_PASSWORD=compose-test", "COUCHWATCH_IMAGE=", "COUCHWATCH_METRICS_PUBLISH=")
	out, err := cmd.Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		return nil, msg, false
	}
	var m map[string]any
	mustYAML(t, out, &m)
	return m, "", true
}

// upgradeServiceView is what CHT's upgrade service runs: every file of the folder, as seen
// from a different mount point (its container's /docker-compose; here a copy of the
// folder elsewhere), validated alone in alphabetical order, then merged.
func upgradeServiceView(t *testing.T, site string) (model map[string]any, used []string) {
	t.Helper()
	view := filepath.Join(t.TempDir(), "docker-compose")
	if err := os.CopyFS(view, os.DirFS(site)); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(view)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, n := range names {
		if _, msg, ok := composeConfig(t, view, n); !ok {
			t.Errorf("%s does not stand alone: the upgrade service would skip it: %s", n, msg)
			continue
		}
		used = append(used, n)
	}
	model, msg, ok := composeConfig(t, view, used...)
	if !ok {
		t.Fatalf("the upgrade service's merge of %v fails: %s", used, msg)
	}
	return model, used
}

func service(m map[string]any, name string) map[string]any {
	s, _ := get(m, "services", name).(map[string]any)
	return s
}

// bindSources maps a service's volume targets to their sources.
func bindSources(svc map[string]any) map[string]string {
	out := map[string]string{}
	for _, v := range asList(svc["volumes"]) {
		switch v := v.(type) {
		case string:
			parts := strings.Split(v, ":")
			if len(parts) >= 2 {
				out[parts[1]] = parts[0]
			}
		case map[string]any:
			src, _ := v["source"].(string)
			tgt, _ := v["target"].(string)
			out[tgt] = src
		}
	}
	return out
}

// TestComposeShippedFilesStandAlone: each shipped override alone, and merged with CHT's
// files in the folder's alphabetical order, through Debian's docker-compose.
func TestComposeShippedFilesStandAlone(t *testing.T) {
	site := chtComposeSite(t)
	for _, f := range []string{"couchwatch.yml", "00-couchwatch-runtime-api.yml"} {
		if err := os.WriteFile(filepath.Join(site, f), readFile(t, filepath.Join("compose", f)), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, msg, ok := composeConfig(t, site, f); !ok {
			t.Errorf("%s alone: %s", f, msg)
		}
	}
	for _, files := range [][]string{
		{"cht-core.yml", "cht-couchdb-clustered.yml", "couchwatch.yml"},
		{"00-couchwatch-runtime-api.yml", "cht-core.yml", "cht-couchdb-clustered.yml", "couchwatch.yml"},
	} {
		m, msg, ok := composeConfig(t, site, files...)
		if !ok {
			t.Errorf("%v: %s", files, msg)
			continue
		}
		if img, _ := service(m, "healthcheck")["image"].(string); img != "couchwatch:dev" {
			t.Errorf("%v: healthcheck image %q, want couchwatch's", files, img)
		}
		if img, _ := service(m, "haproxy")["image"].(string); !strings.HasPrefix(img, "public.ecr.aws/medic/cht-haproxy:") {
			t.Errorf("%v: haproxy image %q, want CHT's own", files, img)
		}
	}
}

// TestGuideComposeInstallMigrateRollback runs the guide's Compose steps on a folder of
// CHT's files and checks what CHT's upgrade service would then run.
func TestGuideComposeInstallMigrateRollback(t *testing.T) {
	dockerCompose(t)
	blocks := guideBlocks(t)
	site := chtComposeSite(t)
	chtHAProxy := service(mustComposeConfig(t, site, "cht-core.yml"), "haproxy")["image"]
	chtAgent := service(mustComposeConfig(t, site, "cht-couchdb-clustered.yml"), "healthcheck")["image"]
	env := []string{"CHT_COMPOSE_PATH=" + site, "COUCHWATCH_IMAGE=" + testImage, "COUCHWATCH_METRICS_PUBLISH=", "COMPOSE="}

	// Step 1, agent mode.
	runGuide(t, blocks, "compose-install", env)
	m, used := upgradeServiceView(t, site)
	if !slices.Contains(used, "couchwatch.yml") {
		t.Fatalf("upgrade service files %v", used)
	}
	hc := service(m, "healthcheck")
	if hc["image"] != testImage {
		t.Errorf("agent mode: healthcheck image %v, want %s (written in: the upgrade service does not have COUCHWATCH_IMAGE)", hc["image"], testImage)
	}
	if env := get(hc, "environment"); get(env, "COUCHDB_SERVERS") == nil || get(env, "COUCHWATCH_HAPROXY_SOCKET") != nil {
		t.Errorf("agent mode: healthcheck environment %v", env)
	}
	if len(bindSources(service(m, "haproxy"))) != 0 {
		t.Errorf("agent mode changes haproxy's volumes: %v", service(m, "haproxy")["volumes"])
	}

	// Step 2, runtime-API mode.
	runGuide(t, blocks, "compose-migrate", env)
	m, used = upgradeServiceView(t, site)
	if !slices.Contains(used, "00-couchwatch-runtime-api.yml") {
		t.Fatalf("runtime file not used by the upgrade service: %v", used)
	}
	hap, hc := service(m, "haproxy"), service(m, "healthcheck")
	if hap["image"] != chtHAProxy {
		t.Errorf("runtime mode: haproxy image %v, want CHT's %v", hap["image"], chtHAProxy)
	}
	if hc["image"] != testImage || get(hc, "environment", "COUCHWATCH_HAPROXY_SOCKET") != "/run/haproxy/admin.sock" {
		t.Errorf("runtime mode: healthcheck image %v environment %v", hc["image"], hc["environment"])
	}
	srcs := bindSources(hap)
	for target, file := range map[string]string{
		"/usr/local/etc/haproxy/couchwatch/couchwatch.cfg": "couchwatch/couchwatch.cfg",
		"/usr/local/bin/docker-entrypoint.sh":              "couchwatch/docker-entrypoint.sh",
	} {
		want := filepath.Join(site, file)
		if srcs[target] != want {
			t.Errorf("haproxy mount %s from %q, want the host path %s (not a path inside the upgrade service's container)", target, srcs[target], want)
		}
		if fi, err := os.Stat(want); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s: %v", want, err)
		}
	}
	if srcs["/run/haproxy"] != "haproxy-run" || bindSources(hc)["/run/haproxy"] != "haproxy-run" || get(m, "volumes", "haproxy-run") == nil {
		t.Errorf("socket volume: haproxy %q healthcheck %q", srcs["/run/haproxy"], bindSources(hc)["/run/haproxy"])
	}

	// Back to agent mode, then remove couchwatch.
	runGuide(t, blocks, "compose-rollback", env)
	m, used = upgradeServiceView(t, site)
	if slices.Contains(used, "couchwatch.yml") || slices.Contains(used, "00-couchwatch-runtime-api.yml") {
		t.Errorf("after rollback the upgrade service still runs %v", used)
	}
	if img := service(m, "healthcheck")["image"]; img != chtAgent {
		t.Errorf("after rollback: healthcheck image %v, want CHT's agent %v", img, chtAgent)
	}
	if len(bindSources(service(m, "haproxy"))) != 0 {
		t.Errorf("after rollback haproxy still mounts %v", service(m, "haproxy")["volumes"])
	}
}

func mustComposeConfig(t *testing.T, dir string, files ...string) map[string]any {
	t.Helper()
	m, msg, ok := composeConfig(t, dir, files...)
	if !ok {
		t.Fatalf("compose config %v: %s", files, msg)
	}
	return m
}
