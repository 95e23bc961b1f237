// Package kubetest runs a real Kubernetes control plane for tests, the way
// net/http/httptest runs a real HTTP server: kube-apiserver and etcd through
// controller-runtime's envtest, and optionally kube-scheduler, all from the
// binaries in KUBEBUILDER_ASSETS (build them with hack/kubebin/build.sh).
//
// Start one Env per test binary in TestMain (see Main) and give each test its
// own namespace and node names.
package kubetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/medic/couchwatch/internal/testenv"
)

// ErrNoAssets means KUBEBUILDER_ASSETS is unset or lacks a binary.
var ErrNoAssets = errors.New("KUBEBUILDER_ASSETS unset or incomplete: run\n\texport KUBEBUILDER_ASSETS=\"$(hack/kubebin/build.sh)\"\n(a cold build takes several minutes, a warm one seconds)")

// Options of a control plane.
type Options struct {
	// Scheduler also runs kube-scheduler against the API server.
	Scheduler bool
}

// Env is a running control plane.
type Env struct {
	// Config authenticates as a cluster admin (system:masters).
	Config *rest.Config
	// Client is a clientset on Config.
	Client kubernetes.Interface

	env      *envtest.Environment
	dir      string
	sched    *exec.Cmd
	schedErr chan error
	log      *testenv.LogBuffer
}

// Start starts etcd and kube-apiserver (and kube-scheduler when asked) from
// KUBEBUILDER_ASSETS. It returns an error wrapping ErrNoAssets when the
// binaries are missing.
func Start(opts Options) (*Env, error) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	need := []string{"kube-apiserver", "etcd"}
	if opts.Scheduler {
		need = append(need, "kube-scheduler")
	}
	if assets == "" {
		return nil, ErrNoAssets
	}
	for _, b := range need {
		if _, err := os.Stat(filepath.Join(assets, b)); err != nil {
			return nil, fmt.Errorf("%w (%v)", ErrNoAssets, err)
		}
	}
	e := &Env{log: &testenv.LogBuffer{}}
	e.env = &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		ControlPlaneStartTimeout: 60 * time.Second,
		ControlPlaneStopTimeout:  20 * time.Second,
	}
	api := e.env.ControlPlane.GetAPIServer()
	api.Out, api.Err = e.log, e.log
	// No controller-manager: nothing would maintain the kubernetes Service's
	// endpoints, and a loopback advertise address is refused anyway.
	api.Configure().
		Set("advertise-address", "127.0.0.1").
		Set("endpoint-reconciler-type", "none")
	e.env.ControlPlane.Etcd = &envtest.Etcd{Out: e.log, Err: e.log}
	cfg, err := e.env.Start()
	if err != nil {
		return nil, fmt.Errorf("start control plane: %w\n%s", err, e.log.String())
	}
	e.Config = cfg
	if e.Client, err = kubernetes.NewForConfig(cfg); err != nil {
		_ = e.env.Stop()
		return nil, fmt.Errorf("client: %w", err)
	}
	if e.dir, err = os.MkdirTemp("", "kubetest-"); err != nil {
		_ = e.env.Stop()
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	if opts.Scheduler {
		if err := e.startScheduler(filepath.Join(assets, "kube-scheduler")); err != nil {
			_ = e.Stop()
			return nil, err
		}
	}
	return e, nil
}

func (e *Env) startScheduler(bin string) error {
	user, err := e.env.AddUser(envtest.User{Name: "kubetest-scheduler", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("scheduler user: %w", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return fmt.Errorf("scheduler kubeconfig: %w", err)
	}
	path := filepath.Join(e.dir, "scheduler.kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		return fmt.Errorf("scheduler kubeconfig: %w", err)
	}
	e.sched = exec.Command(bin,
		"--kubeconfig="+path,
		"--authentication-kubeconfig="+path,
		"--authorization-kubeconfig="+path,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=0",
		"--v=2",
	)
	e.sched.Stdout, e.sched.Stderr = e.log, e.log
	if err := e.sched.Start(); err != nil {
		return fmt.Errorf("start kube-scheduler: %w", err)
	}
	e.schedErr = make(chan error, 1)
	go func() { e.schedErr <- e.sched.Wait() }()
	return nil
}

// SchedulerRunning reports whether kube-scheduler is still alive.
func (e *Env) SchedulerRunning() bool {
	if e.sched == nil {
		return false
	}
	select {
	case err := <-e.schedErr:
		e.schedErr <- err
		return false
	default:
		return true
	}
}

// Log returns everything the control plane processes wrote so far.
func (e *Env) Log() string { return e.log.String() }

// Stop stops every process and removes temporary files.
func (e *Env) Stop() error {
	var errs []error
	if e.sched != nil && e.SchedulerRunning() {
		_ = e.sched.Process.Signal(os.Interrupt)
		select {
		case <-e.schedErr:
		case <-time.After(10 * time.Second):
			_ = e.sched.Process.Kill()
			<-e.schedErr
		}
	}
	if err := e.env.Stop(); err != nil {
		errs = append(errs, fmt.Errorf("stop control plane: %w", err))
	}
	if e.dir != "" {
		errs = append(errs, os.RemoveAll(e.dir))
	}
	return errors.Join(errs...)
}

// Main is a TestMain body: it starts one control plane for the package's tests
// and stores it in *env. Without binaries it fails when CI=true, and otherwise
// runs the tests with *env nil so that Require skips them with a message.
func Main(m *testing.M, opts Options, env **Env) int {
	e, err := Start(opts)
	switch {
	case errors.Is(err, ErrNoAssets) && !testenv.CI():
		fmt.Fprintln(os.Stderr, "kubetest: integration tests will skip:", err)
		return m.Run()
	case err != nil:
		fmt.Fprintln(os.Stderr, "kubetest:", err)
		return 1
	}
	*env = e
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "kubetest: control plane log (tail):\n%s\n", tail(e.Log(), 8000))
	}
	if err := e.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "kubetest:", err)
	}
	return code
}

// Require returns env, or stops the test if there is no control plane (testenv.Missing:
// it fails in CI, skips elsewhere).
func Require(t testing.TB, env *Env) *Env {
	t.Helper()
	if env == nil {
		testenv.Missing(t, "%v", ErrNoAssets)
	}
	return env
}

// Context returns a context that ends with the test or after d.
func Context(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
