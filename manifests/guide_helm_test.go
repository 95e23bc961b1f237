package manifests_test

// The operator guide's Kubernetes steps (install, migrate, roll back), executed as
// written: the shell blocks of docs/operator-guide.md marked "<!-- test: NAME -->" run
// with a real helm against a real kube-apiserver with ServiceAccount admission on, over a
// chart whose templates are CHT's rendered cht-chart 5.2.0 (testdata/cht).

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/medic/couchwatch/internal/testenv"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

const guideFile = "../docs/operator-guide.md"

var guideBlock = regexp.MustCompile("(?s)<!-- test: ([a-z0-9-]+) -->\n```sh\n(.*?)```")

// guideBlocks returns the guide's tested shell blocks by name.
func guideBlocks(t *testing.T) map[string]string {
	t.Helper()
	blocks := map[string]string{}
	for _, m := range guideBlock.FindAllStringSubmatch(string(readFile(t, guideFile)), -1) {
		if _, dup := blocks[m[1]]; dup {
			t.Fatalf("%s: two blocks named %s", guideFile, m[1])
		}
		blocks[m[1]] = m[2]
	}
	return blocks
}

// runGuide runs one of the guide's blocks with sh -eu from the repository root.
func runGuide(t *testing.T, blocks map[string]string, name string, env []string) string {
	t.Helper()
	block, ok := blocks[name]
	if !ok {
		t.Fatalf("%s has no block <!-- test: %s -->", guideFile, name)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-eu", "-c", block)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("guide step %s failed: %v\n--- block\n%s--- output\n%s", name, err, block, out)
	}
	t.Logf("guide step %s:\n%s", name, out)
	return string(out)
}

func helmBin(t *testing.T) string {
	t.Helper()
	if h := os.Getenv("HELM"); h != "" {
		return h
	}
	return tool(t, "helm", filepath.Join(os.Getenv("HOME"), ".cache/couchwatch/helmbin/v3.22.0"))
}

// chtChartDir writes a chart whose only template is a rendered CHT chart, renamed to
// namespace ns: helm install of it creates exactly what cht-chart creates.
func chtChartDir(t *testing.T, rendered []byte, from, ns string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "cht-chart")
	for p, c := range map[string]string{
		"Chart.yaml":           "apiVersion: v2\nname: cht-chart\nversion: 5.2.0\nappVersion: 5.2.0\n",
		"files/rendered.yaml":  strings.ReplaceAll(string(rendered), from, ns),
		"templates/cht.yaml":   `{{ .Files.Get "files/rendered.yaml" }}`,
		"values.yaml":          "{}\n",
		"templates/NOTES.txt":  "CHT test chart\n",
		"files/.helmignore.md": "",
	} {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// startAPIServer starts etcd and kube-apiserver with ServiceAccount admission ENABLED
// (envtest disables it by default) and the CRDs in the given directories.
func startAPIServer(t *testing.T, crds ...string) (kubernetes.Interface, string) {
	t.Helper()
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		testenv.Missing(t, "KUBEBUILDER_ASSETS is not set (export KUBEBUILDER_ASSETS=$(hack/kubebin/build.sh))")
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     crds,
		ErrorIfCRDPathMissing: true,
	}
	var log testenv.LogBuffer
	api := env.ControlPlane.GetAPIServer()
	api.Out, api.Err = &log, &log
	api.Configure().
		Disable("disable-admission-plugins").
		Set("enable-admission-plugins", "ServiceAccount").
		Set("advertise-address", "127.0.0.1").
		Set("endpoint-reconciler-type", "none")
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start API server: %v\n%s", err, log.String())
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Logf("stop API server: %v", err)
		}
	})
	if !strings.Contains(strings.Join(api.Configure().Get("enable-admission-plugins").Get(nil), ","), "ServiceAccount") {
		t.Fatal("ServiceAccount admission is not on")
	}
	user, err := env.AddUser(envtest.User{Name: "operator", Groups: []string{"system:masters"}}, nil)
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
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs, kubeconfig
}

// newNamespace creates ns and its "default" ServiceAccount, which kube-controller-manager
// would create (it does not run here; ServiceAccount admission refuses pods without it).
func newNamespace(t *testing.T, cs kubernetes.Interface, ns string) {
	t.Helper()
	ctx := t.Context()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// haproxyPodAdmitted creates a Pod from cht-haproxy's current template, as the
// Deployment's ReplicaSet would (no controller-manager runs here), and deletes it again.
// It returns the API server's refusal, if any.
func haproxyPodAdmitted(t *testing.T, cs kubernetes.Interface, ns string) error {
	t.Helper()
	ctx := t.Context()
	dep, err := cs.AppsV1().Deployments(ns).Get(ctx, "cht-haproxy", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "cht-haproxy-", Labels: dep.Spec.Template.Labels},
		Spec:       dep.Spec.Template.Spec,
	}
	created, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	zero := int64(0)
	if err := cs.CoreV1().Pods(ns).Delete(ctx, created.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	return nil
}

func haproxyPodSpec(t *testing.T, cs kubernetes.Interface, ns string) corev1.PodSpec {
	t.Helper()
	dep, err := cs.AppsV1().Deployments(ns).Get(t.Context(), "cht-haproxy", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return dep.Spec.Template.Spec
}

func hasContainer(spec corev1.PodSpec, name string) bool {
	for _, c := range spec.Containers {
		if c.Name == name {
			return true
		}
	}
	return false
}

// TestGuideKubernetesInstallMigrateRollback runs the guide's Kubernetes steps on a
// cht-chart 5.2.0 site: install (agent mode), migrate (runtime mode), roll back with
// helm upgrade and with helm rollback, each followed by a new HAProxy pod that the API
// server must admit; and a second CHT instance installed beside the first.
func TestGuideKubernetesInstallMigrateRollback(t *testing.T) {
	helm := helmBin(t)
	kc := kubectl(t)
	blocks := guideBlocks(t)
	cs, kubeconfig := startAPIServer(t, "testdata/crds")

	const ns = "cht-prod"
	chart := chtChartDir(t, readFile(t, chart5), "cht-prod", ns)
	values, err := filepath.Abs("testdata/cht/cht-chart-5.2.0-3node.values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	newNamespace(t, cs, ns)
	siteEnv := func(ns, chart string) []string {
		return []string{
			"KUBECONFIG=" + kubeconfig,
			"PATH=" + filepath.Dir(helm) + ":" + filepath.Dir(kc) + ":" + os.Getenv("PATH"),
			"CHT_RELEASE=cht", "CHT_CHART=" + chart, "CHT_VALUES=" + values, "CHT_NAMESPACE=" + ns,
			"COUCHWATCH_IMAGE=" + testImage,
			// What the operator's own shell would not carry over from this test's.
			"COUCHWATCH_MODE=", "COUCHWATCH_NAMESPACE=", "KUSTOMIZE=", "HELM_NAMESPACE=",
		}
	}
	env := siteEnv(ns, chart)
	helmCmd := func(args ...string) string {
		return string(run(t, nil, env, helm, append([]string{"--kubeconfig", kubeconfig}, args...)...))
	}

	// The site as it runs today: cht-chart without couchwatch.
	helmCmd("install", "cht", chart, "-n", ns, "-f", values)
	if err := haproxyPodAdmitted(t, cs, ns); err != nil {
		t.Fatalf("CHT's own HAProxy pod refused before couchwatch: %v", err)
	}

	// Step 1: agent mode.
	runGuide(t, blocks, "k8s-install", env)
	spec := haproxyPodSpec(t, cs, ns)
	if !hasContainer(spec, "couchwatch") || spec.ServiceAccountName != "couchwatch" {
		t.Fatalf("after install: containers %v, serviceAccountName %q", spec.Containers, spec.ServiceAccountName)
	}
	for _, c := range spec.Containers {
		for _, e := range c.Env {
			if c.Name == "couchwatch" && e.Name == "COUCHWATCH_HAPROXY_SOCKET" {
				t.Error("install step is not agent mode")
			}
		}
	}
	if err := haproxyPodAdmitted(t, cs, ns); err != nil {
		t.Fatalf("HAProxy pod refused in agent mode: %v", err)
	}

	// Step 2: runtime-API mode.
	runGuide(t, blocks, "k8s-migrate", env)
	spec = haproxyPodSpec(t, cs, ns)
	runtimeMode := false
	for _, v := range spec.Volumes {
		runtimeMode = runtimeMode || v.Name == "haproxy-run"
	}
	if !runtimeMode {
		t.Error("after the migrate step the pod has no socket volume")
	}
	if err := haproxyPodAdmitted(t, cs, ns); err != nil {
		t.Fatalf("HAProxy pod refused in runtime mode: %v", err)
	}

	// A second CHT instance (staging) beside the first, same steps.
	const staging = "cht-staging"
	newNamespace(t, cs, staging)
	stagingChart := chtChartDir(t, readFile(t, chart5), "cht-prod", staging)
	run(t, nil, env, helm, "--kubeconfig", kubeconfig, "install", "cht", stagingChart, "-n", staging, "-f", values)
	runGuide(t, blocks, "k8s-install", siteEnv(staging, stagingChart))
	if err := haproxyPodAdmitted(t, cs, staging); err != nil {
		t.Fatalf("staging HAProxy pod refused: %v", err)
	}
	for _, inst := range []string{ns, staging} {
		crb, err := cs.RbacV1().ClusterRoleBindings().Get(t.Context(), "couchwatch-"+inst, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("instance %s: %v", inst, err)
		}
		if len(crb.Subjects) != 1 || crb.Subjects[0].Namespace != inst {
			t.Errorf("ClusterRoleBinding %s binds %v", crb.Name, crb.Subjects)
		}
	}

	// Roll back: helm upgrade without the post-renderer.
	runGuide(t, blocks, "k8s-remove", env)
	spec = haproxyPodSpec(t, cs, ns)
	if hasContainer(spec, "couchwatch") || spec.ServiceAccountName != "" || spec.DeprecatedServiceAccount != "" {
		t.Errorf("after removal: couchwatch container %v, serviceAccountName %q, serviceAccount %q",
			hasContainer(spec, "couchwatch"), spec.ServiceAccountName, spec.DeprecatedServiceAccount)
	}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Get(t.Context(), "couchwatch", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("ServiceAccount couchwatch after removal: %v, want deleted with the release", err)
	}
	if err := haproxyPodAdmitted(t, cs, ns); err != nil {
		t.Fatalf("HAProxy pod refused after helm upgrade without the post-renderer: %v", err)
	}
	if svc, err := cs.CoreV1().Services(ns).Get(t.Context(), "healthcheck", metav1.GetOptions{}); err != nil || svc.Spec.Selector["cht.service"] != "healthcheck" {
		t.Errorf("healthcheck Service after removal: %v %v", svc.Spec.Selector, err)
	}

	// Install again, then roll back to the revision before couchwatch with helm rollback.
	runGuide(t, blocks, "k8s-install", env)
	history := helmCmd("history", "cht", "-n", ns)
	t.Logf("helm history:\n%s", history)
	runGuide(t, blocks, "k8s-rollback", append(env, "CHT_REVISION=1"))
	spec = haproxyPodSpec(t, cs, ns)
	if hasContainer(spec, "couchwatch") || spec.ServiceAccountName != "" || spec.DeprecatedServiceAccount != "" {
		t.Errorf("after helm rollback: couchwatch container %v, serviceAccountName %q, serviceAccount %q",
			hasContainer(spec, "couchwatch"), spec.ServiceAccountName, spec.DeprecatedServiceAccount)
	}
	if err := haproxyPodAdmitted(t, cs, ns); err != nil {
		t.Fatalf("HAProxy pod refused after helm rollback: %v", err)
	}
	// The staging instance is untouched by production's rollback.
	if !hasContainer(haproxyPodSpec(t, cs, staging), "couchwatch") {
		t.Error("rolling back production removed couchwatch from staging")
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Get(t.Context(), "couchwatch-"+staging, metav1.GetOptions{}); err != nil {
		t.Errorf("staging's ClusterRoleBinding after production's rollback: %v", err)
	}
}

// TestGuideBlocksUseNoPlaceholders keeps the tested blocks runnable: no <...> for a reader
// to fill in (those belong in the untested block that sets the variables).
func TestGuideBlocksUseNoPlaceholders(t *testing.T) {
	blocks := guideBlocks(t)
	for _, want := range []string{"k8s-install", "k8s-migrate", "k8s-remove", "k8s-rollback", "k8s-legacy-fix", "compose-install", "compose-migrate", "compose-rollback"} {
		b, ok := blocks[want]
		if !ok {
			t.Errorf("%s has no tested block %s", guideFile, want)
			continue
		}
		if regexp.MustCompile(`<[a-z-]+>`).MatchString(b) {
			t.Errorf("block %s has a placeholder:\n%s", want, b)
		}
	}
	if len(blocks) == 0 {
		t.Fatal("no tested blocks")
	}
}

// TestNoPrometheusOperator: on a cluster without prometheus-operator's CRDs (Medic's
// plain-Prometheus observability chart), the default render is refused ("no matches for
// kind PodMonitor", as helm upgrade reports it) and COUCHWATCH_PROMETHEUS_OPERATOR=false
// is accepted, for both of CHT's charts.
func TestNoPrometheusOperator(t *testing.T) {
	kc := kubectl(t)
	cs, kubeconfig := startAPIServer(t)
	for _, ch := range chtCharts(t) {
		newNamespace(t, cs, ch.namespace)
		for _, op := range []string{"true", "false"} {
			out, stderr, err := postRender(t, ch.output, "COUCHWATCH_PROMETHEUS_OPERATOR="+op)
			if err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			out = []byte(strings.ReplaceAll(string(out), "<subdomain>.dev.medicmobile.org", "site.example.org"))
			cmd := exec.CommandContext(t.Context(), kc, "--kubeconfig", kubeconfig, "apply", "--dry-run=server", "-f", "-")
			cmd.Stdin = strings.NewReader(string(out))
			res, err := cmd.CombinedOutput()
			switch {
			case op == "true" && (err == nil || !strings.Contains(string(res), `no matches for kind "PodMonitor"`)):
				t.Errorf("%s with the operator's objects and no CRDs: err %v\n%s", ch.name, err, res)
			case op == "false" && err != nil:
				t.Errorf("%s, COUCHWATCH_PROMETHEUS_OPERATOR=false, no CRDs: %v\n%s", ch.name, err, res)
			}
		}
	}
}

// TestGuideKubernetesLegacyRollbackFix reproduces the rollback outage with what couchwatch
// rendered before (serviceAccountName only) and runs the guide's fix for such releases.
func TestGuideKubernetesLegacyRollbackFix(t *testing.T) {
	helm := helmBin(t)
	kc := kubectl(t)
	blocks := guideBlocks(t)
	cs, kubeconfig := startAPIServer(t, "testdata/crds")
	const ns = "cht-prod"
	chart := chtChartDir(t, readFile(t, chart5), "cht-prod", ns)
	newNamespace(t, cs, ns)
	env := []string{
		"KUBECONFIG=" + kubeconfig,
		"PATH=" + filepath.Dir(helm) + ":" + filepath.Dir(kc) + ":" + os.Getenv("PATH"),
		"CHT_RELEASE=cht", "CHT_CHART=" + chart, "CHT_VALUES=" + chart + "/values.yaml", "CHT_NAMESPACE=" + ns,
		"COUCHWATCH_IMAGE=" + testImage, "COUCHWATCH_MODE=", "COUCHWATCH_NAMESPACE=", "KUSTOMIZE=",
	}
	// The earlier post-renderer: the same build without the serviceAccount alias.
	legacy := filepath.Join(t.TempDir(), "legacy-post-renderer.sh")
	script, err := filepath.Abs(postRenderer)
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, legacy, "#!/bin/sh\nset -e\n"+script+" | sed '/^      serviceAccount: couchwatch$/d'\n")
	if err := os.Chmod(legacy, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, nil, env, helm, "install", "cht", chart, "-n", ns, "--post-renderer", legacy)
	if spec := haproxyPodSpec(t, cs, ns); spec.ServiceAccountName != "couchwatch" || spec.DeprecatedServiceAccount != "couchwatch" {
		t.Fatalf("legacy install: serviceAccountName %q serviceAccount %q", spec.ServiceAccountName, spec.DeprecatedServiceAccount)
	}
	runGuide(t, blocks, "k8s-remove", env)
	if err := haproxyPodAdmitted(t, cs, ns); err == nil {
		t.Fatal("a legacy release's HAProxy pod was admitted after removal: the test no longer reproduces the outage")
	} else {
		t.Logf("as expected, before the fix: %v", err)
	}
	runGuide(t, blocks, "k8s-legacy-fix", env)
	if err := haproxyPodAdmitted(t, cs, ns); err != nil {
		t.Fatalf("HAProxy pod refused after the guide's fix: %v", err)
	}
	if spec := haproxyPodSpec(t, cs, ns); spec.ServiceAccountName != "" || spec.DeprecatedServiceAccount != "" {
		t.Errorf("after the fix: serviceAccountName %q serviceAccount %q", spec.ServiceAccountName, spec.DeprecatedServiceAccount)
	}
}
