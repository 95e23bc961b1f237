package manifests_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/medic/couchwatch/couch/couchtest"
	"github.com/medic/couchwatch/haproxy/haproxytest"
	"github.com/medic/couchwatch/internal/testenv"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// couchwatchBin is couchwatch built by TestMain, once, outside every test's deadline.
var couchwatchBin string

func TestMain(m *testing.M) {
	os.Exit(testenv.Main(m, func(dir string) (err error) {
		couchwatchBin, err = testenv.GoBuild(dir, "./cmd/couchwatch", []string{"CGO_ENABLED=0"},
			"-ldflags", "-X main.version=manifests-test")
		return err
	}))
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestLiveMetricsCoverRulesAndDashboard builds couchwatch, runs it in runtime-API mode
// against a simulated 3-node CouchDB and a real HAProxy, scrapes /metrics and checks that
// every metric the alert rules and the dashboard query is one couchwatch exports.
func TestLiveMetricsCoverRulesAndDashboard(t *testing.T) {
	tool(t, "haproxy", "/usr/sbin")
	bin := couchwatchBin

	cluster := couchtest.NewClusterT(t, 3, couchtest.Options{})
	var servers []haproxytest.ServerSpec
	for i, addr := range strings.Split(cluster.Targets(), ",") {
		servers = append(servers, haproxytest.ServerSpec{Name: fmt.Sprintf("couchdb-%d", i+1), Addr: addr})
	}
	hap := haproxytest.StartT(t, haproxytest.Options{Backend: "couchdb-servers", Servers: servers})

	listen := freeAddr(t)
	ctx, cancel := context.WithCancel(t.Context())
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(os.Environ(),
		"COUCHDB_SERVERS="+cluster.Targets(),
		"COUCHDB_USER="+cluster.User(),
		"COUCHDB_PASSWORD="+cluster.Password(),
		"COUCHWATCH_LISTEN="+listen,
		"COUCHWATCH_AGENT_LISTEN="+freeAddr(t),
		"COUCHWATCH_KUBE=off",
		"COUCHWATCH_HAPROXY_SOCKET="+hap.Socket(),
		"COUCHWATCH_HAPROXY_BACKEND=couchdb-servers",
	)
	var logs testenv.LogBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("couchwatch log:\n%s", logs.String())
		}
	})

	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get("http://" + listen + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-done:
			t.Fatalf("couchwatch exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("couchwatch not ready after 30s (last: %v)", err)
		}
		time.Sleep(50 * time.Millisecond) // polling a condition with a deadline
	}

	// Put node 3 in maintenance (nolb): couchwatch drains it, so the drain counters exist
	// too. Scrape until they appear.
	if err := cluster.Nodes()[2].SetMaintenance("nolb"); err != nil {
		t.Fatal(err)
	}
	var body []byte
	deadline = time.Now().Add(20 * time.Second)
	for {
		body = scrape(t, client, "http://"+listen+"/metrics")
		// The shard maps are read once a node answers: their gauges appear then.
		if bytes.Contains(body, []byte("couchwatch_haproxy_drains_total{")) && bytes.Contains(body, []byte("couchwatch_shard_ranges_unavailable{")) {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("no drain counted or no shard map read 20s after node 3 went into maintenance")
			break
		}
		time.Sleep(100 * time.Millisecond) // polling a condition with a deadline
	}
	families := map[string]string{} // name -> type
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			families[f[2]] = f[3]
		}
	}
	var missing []string
	for name, where := range usedMetrics(t) {
		b := base(name, func(f string) bool { return families[f] == "histogram" })
		if _, ok := families[b]; !ok {
			missing = append(missing, fmt.Sprintf("%s (used by %s)", name, strings.Join(where, ", ")))
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("not exported by a live couchwatch: %s", m)
	}
}

func scrape(t *testing.T, client *http.Client, url string) []byte {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return body
}

// TestServerSideDryRun applies what kustomize builds (runtime-API mode, and the
// post-renderer's agent mode) with --dry-run=server to a real API server, with minimal
// prometheus-operator CRDs installed first.
func TestServerSideDryRun(t *testing.T) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		testenv.Missing(t, "KUBEBUILDER_ASSETS is not set (export KUBEBUILDER_ASSETS=$(hack/kubebin/build.sh))")
	}
	kc := kubectl(t)
	runtimeMode := run(t, nil, nil, kc, "kustomize", "kubernetes/example")
	agentMode := run(t, readFile(t, "kubernetes/example/cht-chart-sample.yaml"),
		[]string{"KUSTOMIZE=" + kc + " kustomize", "COUCHWATCH_NAMESPACE=cht", "COUCHWATCH_MODE=agent", "COUCHWATCH_IMAGE=medic/couchwatch:v0.1.0"},
		"kubernetes/post-renderer/couchwatch-post-renderer.sh")

	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{"testdata/crds"},
		ErrorIfCRDPathMissing: true,
	}
	if _, err := env.Start(); err != nil {
		t.Fatalf("start API server: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Logf("stop API server: %v", err)
		}
	})
	user, err := env.AddUser(envtest.User{Name: "manifests-test", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kcfg, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, kcfg, 0o600); err != nil {
		t.Fatal(err)
	}
	run(t, nil, nil, kc, "--kubeconfig", kubeconfig, "create", "namespace", "cht")

	manifests := map[string][]byte{"runtime": runtimeMode, "agent": agentMode}
	// CHT's own charts (5.2.0 and 4x) through the post-renderer, every mode.
	for _, ch := range chtCharts(t) {
		run(t, nil, nil, kc, "--kubeconfig", kubeconfig, "create", "namespace", ch.namespace)
		for _, mode := range []string{"agent", "runtime"} {
			for _, op := range []string{"true", "false"} {
				out, stderr, err := postRender(t, ch.output, "COUCHWATCH_MODE="+mode, "COUCHWATCH_PROMETHEUS_OPERATOR="+op)
				if err != nil {
					t.Fatalf("%s %s: %v\n%s", ch.name, mode, err, stderr)
				}
				// The 4x fixture was rendered with the chart's placeholder Ingress host, which
				// the API server rightly refuses; a site has its own host there.
				out = bytes.ReplaceAll(out, []byte("<subdomain>.dev.medicmobile.org"), []byte("site.example.org"))
				manifests[ch.name+"/"+mode+"/prometheus-operator="+op] = out
			}
		}
	}

	for name, manifest := range manifests {
		t.Run(name, func(t *testing.T) {
			out := string(run(t, manifest, nil, kc, "--kubeconfig", kubeconfig, "apply", "--dry-run=server", "-f", "-"))
			objs := splitYAML(t, manifest)
			for _, o := range objs {
				if !strings.Contains(out, "/"+o.name()+" ") || !strings.Contains(out, "(server dry run)") {
					t.Errorf("%s %s not accepted by the API server:\n%s", o.kind(), o.name(), out)
				}
			}
			t.Logf("%d objects accepted:\n%s", len(objs), out)
		})
	}
}
