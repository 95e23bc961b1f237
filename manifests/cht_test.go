package manifests_test

// Tests of the post-renderer against what CHT's own charts render (testdata/cht, see its
// README): cht-chart 5.2.0 (cht-core scripts/build/helm) and cht-chart-4x.

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const (
	postRenderer = "kubernetes/post-renderer/couchwatch-post-renderer.sh"
	chart5       = "testdata/cht/cht-chart-5.2.0-3node.yaml"
	chart4x      = "testdata/cht/cht-chart-4x-3node.yaml"
	testImage    = "registry.example/couchwatch:v1.2.3"
)

// chtChart is one fixture chart's output as Helm hands it to a post-renderer.
type chtChart struct {
	name      string
	namespace string // the namespace the chart was rendered for
	output    []byte
}

func chtCharts(t *testing.T) []chtChart {
	t.Helper()
	return []chtChart{
		{"cht-chart-5.2.0", "cht-prod", readFile(t, chart5)},
		{"cht-chart-4x", "mrjones-dev", chartOnly4x(t)},
	}
}

// chartOnly4x returns the cht-chart-4x fixture without what couchwatch added: the
// fixture was captured from a site already running couchwatch (runtime mode). What is
// left must not mention couchwatch at all, so nothing of ours leaks into the input.
func chartOnly4x(t *testing.T) []byte {
	t.Helper()
	var out bytes.Buffer
	for _, o := range splitYAML(t, readFile(t, chart4x)) {
		if get(o, "metadata", "labels", "app.kubernetes.io/name") == "couchwatch" {
			continue
		}
		switch o.kind() + "/" + o.name() {
		case "Deployment/cht-haproxy":
			tmpl := get(o, "spec", "template").(map[string]any)
			labels := get(tmpl, "metadata", "labels").(map[string]any)
			delete(labels, "app.kubernetes.io/name")
			delete(labels, "app.kubernetes.io/part-of")
			pod := tmpl["spec"].(map[string]any)
			for _, k := range []string{"automountServiceAccountToken", "serviceAccountName", "serviceAccount", "securityContext", "volumes"} {
				delete(pod, k)
			}
			var containers []any
			for _, c := range pod["containers"].([]any) {
				c := c.(map[string]any)
				if c["name"] == "couchwatch" {
					continue
				}
				delete(c, "volumeMounts")
				containers = append(containers, c)
			}
			pod["containers"] = containers
		case "Service/healthcheck":
			get(o, "spec", "selector").(map[string]any)["cht.service"] = "healthcheck"
		case "Deployment/cht-haproxy-healthcheck":
			get(o, "spec").(map[string]any)["replicas"] = 1
		}
		b, err := yaml.Marshal(map[string]any(o))
		if err != nil {
			t.Fatal(err)
		}
		out.WriteString("---\n")
		out.Write(b)
	}
	if i := bytes.Index(out.Bytes(), []byte("couchwatch")); i >= 0 {
		t.Fatalf("%s still mentions couchwatch after stripping: ...%s...", chart4x, out.Bytes()[max(0, i-200):i+50])
	}
	return out.Bytes()
}

// postRender runs the post-renderer; env adds to (and overrides) the test's defaults.
func postRender(t *testing.T, input []byte, env ...string) (stdout, stderr []byte, err error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), postRenderer)
	cmd.Env = append(os.Environ(), "KUSTOMIZE="+kubectl(t)+" kustomize", "COUCHWATCH_IMAGE="+testImage,
		"COUCHWATCH_NAMESPACE=", "COUCHWATCH_MODE=", "COUCHWATCH_PROMETHEUS_OPERATOR=", "COUCHWATCH_GRAFANA_DASHBOARD_LABEL=", "COUCHWATCH_REBALANCE=")
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdin = bytes.NewReader(input)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.Bytes(), e.Bytes(), err
}

func mustPostRender(t *testing.T, input []byte, env ...string) []object {
	t.Helper()
	out, stderr, err := postRender(t, input, env...)
	if err != nil {
		t.Fatalf("post-renderer %v: %v\n%s", env, err, stderr)
	}
	return splitYAML(t, out)
}

// num reads a YAML number (or an octal-looking string kustomize kept) as an int.
func num(v any) (int, bool) {
	switch v := v.(type) {
	case float64:
		return int(v), true
	case int:
		return v, true
	case string:
		n, err := strconv.ParseInt(v, 0, 32)
		return int(n), err == nil
	}
	return 0, false
}

// secretFileAccess works out, the way the kubelet sets up a Secret volume, whether the
// named container can read the file behind its COUCHDB_PASSWORD_FILE: the file belongs to
// root and, with a pod fsGroup, to that group, which also gets read permission
// (volume.SetVolumeOwnership); its mode is the item's mode, else the volume's defaultMode,
// else 0644. The process runs with the container's (else the pod's) runAsUser and
// runAsGroup, plus fsGroup and supplementalGroups.
func secretFileAccess(pod any, container string) (readable bool, why string) {
	c := get(pod, "containers", "name="+container)
	if c == nil {
		return false, "no container " + container
	}
	file, _ := get(c, "env", "name=COUCHDB_PASSWORD_FILE", "value").(string)
	if file == "" {
		return false, "no COUCHDB_PASSWORD_FILE"
	}
	var vol, sub string
	for _, m := range get(c, "volumeMounts").([]any) {
		mp := get(m, "mountPath").(string)
		if rest, ok := strings.CutPrefix(file, strings.TrimSuffix(mp, "/")+"/"); ok {
			vol, sub = get(m, "name").(string), rest
		}
	}
	if vol == "" {
		return false, file + " is on no volume mount"
	}
	secret := get(pod, "volumes", "name="+vol, "secret")
	if secret == nil {
		return false, "volume " + vol + " is not a Secret"
	}
	mode := 0o644
	if m, ok := num(get(secret, "defaultMode")); ok {
		mode = m
	}
	if items, _ := get(secret, "items").([]any); items != nil {
		found := false
		for _, it := range items {
			if get(it, "path") == sub {
				found = true
				if m, ok := num(get(it, "mode")); ok {
					mode = m
				}
			}
		}
		if !found {
			return false, "the Secret volume has no item " + sub
		}
	}
	ctx := func(k string) (int, bool) {
		if v, ok := num(get(c, "securityContext", k)); ok {
			return v, true
		}
		return num(get(pod, "securityContext", k))
	}
	uid, ok := ctx("runAsUser")
	if !ok {
		return false, "no runAsUser: cannot tell who reads the file"
	}
	gid, _ := ctx("runAsGroup")
	groups := []int{gid}
	fileGroup := 0
	if fs, ok := num(get(pod, "securityContext", "fsGroup")); ok {
		groups = append(groups, fs)
		fileGroup = fs
		mode |= 0o440
	}
	for _, g := range asList(get(pod, "securityContext", "supplementalGroups")) {
		if n, ok := num(g); ok {
			groups = append(groups, n)
		}
	}
	why = fmt.Sprintf("file root:%d mode %#o, process %d:%v", fileGroup, mode, uid, groups)
	switch {
	case uid == 0:
		return true, why
	case slices.Contains(groups, fileGroup):
		return mode&0o040 != 0, why
	default:
		return mode&0o004 != 0, why
	}
}

func asList(v any) []any { l, _ := v.([]any); return l }

// TestPostRendererCHTCharts renders both of CHT's charts through the post-renderer in
// every mode and checks, from the pod spec, that couchwatch can read its password
// (issue: agent mode mounted it root-only and couchwatch exited 2, taking HAProxy's
// Recreate pod down with it), that CHT's own objects are otherwise untouched, that the
// namespace is the chart's, and the Prometheus operator switch.
func TestPostRendererCHTCharts(t *testing.T) {
	for _, ch := range chtCharts(t) {
		input := splitYAML(t, ch.output)
		for _, mode := range []string{"agent", "runtime"} {
			for _, operator := range []string{"true", "false"} {
				t.Run(fmt.Sprintf("%s/%s/prometheus-operator=%s", ch.name, mode, operator), func(t *testing.T) {
					objs := mustPostRender(t, ch.output, "COUCHWATCH_MODE="+mode, "COUCHWATCH_PROMETHEUS_OPERATOR="+operator)
					dep := find(t, objs, "Deployment", "cht-haproxy")
					pod := get(dep, "spec", "template", "spec")

					// The password file: who, which group, fsGroup, mode; then can it be read.
					cw := get(pod, "containers", "name=couchwatch")
					if got := get(cw, "image"); got != testImage {
						t.Errorf("couchwatch image %v, want %s", got, testImage)
					}
					for k, want := range map[string]int{"runAsUser": 65532, "runAsGroup": 65532} {
						if got, _ := num(get(cw, "securityContext", k)); got != want {
							t.Errorf("couchwatch %s = %v, want %d", k, get(cw, "securityContext", k), want)
						}
					}
					if got, _ := num(get(pod, "securityContext", "fsGroup")); got != 65532 {
						t.Errorf("pod fsGroup = %v, want 65532", get(pod, "securityContext", "fsGroup"))
					}
					if got, _ := num(get(pod, "volumes", "name=couchwatch-credentials", "secret", "defaultMode")); got != 0o440 {
						t.Errorf("password Secret defaultMode = %v, want 0440", get(pod, "volumes", "name=couchwatch-credentials", "secret", "defaultMode"))
					}
					if ok, why := secretFileAccess(pod, "couchwatch"); !ok {
						t.Errorf("couchwatch cannot read its password file: %s", why)
					} else {
						t.Logf("password file readable: %s", why)
					}

					// CHT's HAProxy container and the strategy stay as the chart made them.
					orig := find(t, input, "Deployment", "cht-haproxy")
					if got, want := get(dep, "spec", "strategy"), get(orig, "spec", "strategy"); fmt.Sprint(got) != fmt.Sprint(want) {
						t.Errorf("strategy %v, chart has %v", got, want)
					}
					hap, origHap := get(pod, "containers", "name=cht-haproxy"), get(orig, "spec", "template", "spec", "containers", "name=cht-haproxy")
					if get(hap, "image") != get(origHap, "image") || fmt.Sprint(get(hap, "env")) != fmt.Sprint(get(origHap, "env")) {
						t.Errorf("the HAProxy container changed: %v", hap)
					}
					if (mode == "agent") != (get(hap, "volumeMounts") == nil) {
						t.Errorf("%s mode: HAProxy volumeMounts %v", mode, get(hap, "volumeMounts"))
					}
					// Everything else of CHT's (CouchDB with its nouveau container, API, ...) unchanged.
					for _, o := range input {
						if o.kind() == "Deployment" && o.name() != "cht-haproxy" && o.name() != "cht-haproxy-healthcheck" {
							got := find(t, objs, o.kind(), o.name())
							if a, b := fmt.Sprint(get(got, "spec")), fmt.Sprint(get(o, "spec")); a != b {
								t.Errorf("Deployment %s changed", o.name())
							}
						}
					}

					// Namespace: the chart's, on every namespaced object and RBAC subject.
					for _, o := range objs {
						ns := get(o, "metadata", "namespace")
						if clusterScoped(o.kind()) {
							if ns != nil {
								t.Errorf("%s %s has namespace %v", o.kind(), o.name(), ns)
							}
						} else if ns != ch.namespace {
							t.Errorf("%s %s in namespace %v, want %s", o.kind(), o.name(), ns, ch.namespace)
						}
						for _, s := range asList(get(o, "subjects")) {
							if get(s, "namespace") != ch.namespace {
								t.Errorf("%s %s binds %v", o.kind(), o.name(), s)
							}
						}
					}

					// Prometheus operator objects, or scrape annotations.
					has := func(kind string) bool {
						return slices.ContainsFunc(objs, func(o object) bool { return o.kind() == kind })
					}
					ann := get(dep, "spec", "template", "metadata", "annotations")
					if operator == "true" {
						if !has("PodMonitor") || !has("PrometheusRule") {
							t.Error("prometheus-operator on: PodMonitor or PrometheusRule missing")
						}
						if get(ann, "prometheus.io/scrape") != nil {
							t.Error("prometheus-operator on: scrape annotations too (double scrape)")
						}
					} else {
						if has("PodMonitor") || has("PrometheusRule") {
							t.Error("COUCHWATCH_PROMETHEUS_OPERATOR=false still renders a PodMonitor or PrometheusRule")
						}
						want := map[string]any{"prometheus.io/scrape": "true", "prometheus.io/port": "9155", "prometheus.io/path": "/metrics"}
						for k, v := range want {
							if get(ann, k) != v {
								t.Errorf("annotation %s = %v, want %v", k, get(ann, k), v)
							}
						}
						if get(cw, "ports", "name=metrics", "containerPort") != float64(9155) {
							t.Error("the annotated port is not couchwatch's metrics port")
						}
					}
				})
			}
		}
	}
}

// clusterScoped lists the cluster-scoped kinds that can appear in a build.
func clusterScoped(kind string) bool {
	return slices.Contains([]string{"ClusterRole", "ClusterRoleBinding", "Namespace", "CustomResourceDefinition", "PriorityClass", "StorageClass", "PersistentVolume"}, kind)
}

// TestPostRendererRequiresImage: an unset image fails the render, naming the variable,
// and writes nothing for Helm to apply.
func TestPostRendererRequiresImage(t *testing.T) {
	for _, ch := range chtCharts(t) {
		t.Run(ch.name, func(t *testing.T) {
			out, stderr, err := postRender(t, ch.output, "COUCHWATCH_IMAGE=")
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() == 0 {
				t.Fatalf("post-renderer without COUCHWATCH_IMAGE: err %v, want a non-zero exit", err)
			}
			if !bytes.Contains(stderr, []byte("COUCHWATCH_IMAGE")) {
				t.Errorf("error does not name COUCHWATCH_IMAGE: %s", stderr)
			}
			if len(out) != 0 {
				t.Errorf("wrote %d bytes of manifests on failure", len(out))
			}
		})
	}
}

// TestPostRendererNamespace: the namespace comes from the rendered objects; with none
// there it is refused, never guessed.
func TestPostRendererNamespace(t *testing.T) {
	chart5x := readFile(t, chart5)
	// The 5.x chart without any namespace in it: what a chart that writes neither
	// metadata.namespace nor a namespaced HEALTHCHECK_ADDR hands the post-renderer.
	anonymous := bytes.ReplaceAll(chart5x, []byte("healthcheck.cht-prod.svc.cluster.local"), []byte("healthcheck"))
	nsOf := func(t *testing.T, objs []object) string {
		return fmt.Sprint(get(find(t, objs, "RoleBinding", "couchwatch-leader-election"), "subjects", "name=couchwatch", "namespace"))
	}
	for _, tc := range []struct {
		name    string
		input   []byte
		env     []string
		want    string // namespace of the RBAC subject, or "" for a refusal
		wantErr string
	}{
		{"5.x: from HEALTHCHECK_ADDR", chart5x, nil, "cht-prod", ""},
		{"4x: from metadata.namespace", chartOnly4x(t), nil, "mrjones-dev", ""},
		{"explicit and agreeing", chart5x, []string{"COUCHWATCH_NAMESPACE=cht-prod"}, "cht-prod", ""},
		{"explicit and contradicting", chart5x, []string{"COUCHWATCH_NAMESPACE=default"}, "", "namespace mismatch"},
		{"nothing names it", anonymous, nil, "", "set COUCHWATCH_NAMESPACE"},
		{"nothing names it, explicit", anonymous, []string{"COUCHWATCH_NAMESPACE=cht-uat"}, "cht-uat", ""},
		{"objects in two namespaces", append(chartOnly4x(t), []byte("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: other\n  namespace: elsewhere\n")...), nil, "", "several namespaces"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, stderr, err := postRender(t, tc.input, tc.env...)
			if tc.wantErr != "" {
				if err == nil || !bytes.Contains(stderr, []byte(tc.wantErr)) || len(out) != 0 {
					t.Fatalf("err %v, stderr %q, %d bytes out; want a refusal containing %q", err, stderr, len(out), tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			if got := nsOf(t, splitYAML(t, out)); got != tc.want {
				t.Errorf("RBAC binds the ServiceAccount in %q, want %q", got, tc.want)
			}
		})
	}
}

// TestPostRendererTwoInstances renders each chart for two namespaces (production and
// staging in one cluster) and checks that no two objects collide: cluster-scoped objects
// are named per instance and bind their own instance's ServiceAccount.
func TestPostRendererTwoInstances(t *testing.T) {
	for _, ch := range chtCharts(t) {
		t.Run(ch.name, func(t *testing.T) {
			staging := ch.namespace + "-staging"
			builds := map[string][]object{
				ch.namespace: mustPostRender(t, ch.output, "COUCHWATCH_REBALANCE=true"),
				staging:      mustPostRender(t, bytes.ReplaceAll(ch.output, []byte(ch.namespace), []byte(staging)), "COUCHWATCH_REBALANCE=true"),
			}
			owner := map[string]string{} // kind/namespace/name -> instance
			for inst, objs := range builds {
				for _, o := range objs {
					ns, _ := get(o, "metadata", "namespace").(string)
					key := path.Join(o.kind(), ns, o.name())
					if prev, dup := owner[key]; dup {
						t.Errorf("%s is rendered by both %s and %s", key, prev, inst)
					}
					owner[key] = inst
					if !clusterScoped(o.kind()) {
						continue
					}
					if !strings.HasSuffix(o.name(), "-"+inst) {
						t.Errorf("cluster-scoped %s %s of instance %s is not named per instance", o.kind(), o.name(), inst)
					}
					if o.kind() == "ClusterRoleBinding" {
						role := get(o, "roleRef", "name").(string)
						if !slices.ContainsFunc(objs, func(r object) bool { return r.kind() == "ClusterRole" && r.name() == role }) {
							t.Errorf("%s binds ClusterRole %s, not in this instance's build", o.name(), role)
						}
						for _, s := range asList(get(o, "subjects")) {
							if get(s, "namespace") != inst {
								t.Errorf("%s of %s binds %v", o.name(), inst, s)
							}
						}
					}
				}
			}
			n := 0
			for key := range owner {
				if strings.HasPrefix(key, "Cluster") {
					n++
				}
			}
			if n != 8 { // couchwatch and couchwatch-rebalance, role and binding, twice
				t.Errorf("%d cluster-scoped objects, want 8: %v", n, owner)
			}
		})
	}
}

// TestPostRendererDashboardLabel: the Grafana sidecar label of the dashboard ConfigMap.
func TestPostRendererDashboardLabel(t *testing.T) {
	input := readFile(t, chart5)
	labels := func(t *testing.T, env ...string) map[string]any {
		l, _ := get(find(t, mustPostRender(t, input, env...), "ConfigMap", "couchwatch-dashboard"), "metadata", "labels").(map[string]any)
		return l
	}
	if got := labels(t)["grafana_dashboard"]; got != "1" {
		t.Errorf("default label grafana_dashboard=%v, want 1 (kube-prometheus-stack)", got)
	}
	got := labels(t, "COUCHWATCH_GRAFANA_DASHBOARD_LABEL=grafana_dashboard=medic-observability")
	if got["grafana_dashboard"] != "medic-observability" {
		t.Errorf("labels %v, want grafana_dashboard=medic-observability", got)
	}
	got = labels(t, "COUCHWATCH_GRAFANA_DASHBOARD_LABEL=example.org/dashboard=cht")
	if got["example.org/dashboard"] != "cht" || got["grafana_dashboard"] != nil {
		t.Errorf("labels %v, want only example.org/dashboard=cht", got)
	}
	for _, bad := range []string{"medic-observability", "grafana dashboard=1", "k=v w"} {
		if _, stderr, err := postRender(t, input, "COUCHWATCH_GRAFANA_DASHBOARD_LABEL="+bad); err == nil || !bytes.Contains(stderr, []byte("COUCHWATCH_GRAFANA_DASHBOARD_LABEL")) {
			t.Errorf("label %q: err %v, stderr %s; want a refusal naming the variable", bad, err, stderr)
		}
	}
	for _, bad := range []string{"COUCHWATCH_PROMETHEUS_OPERATOR=no", "COUCHWATCH_MODE=bogus", "COUCHWATCH_REBALANCE=1"} {
		name, _, _ := strings.Cut(bad, "=")
		if _, stderr, err := postRender(t, input, bad); err == nil || !bytes.Contains(stderr, []byte(name)) {
			t.Errorf("%s: err %v, stderr %s; want a refusal naming %s", bad, err, stderr, name)
		}
	}
}
