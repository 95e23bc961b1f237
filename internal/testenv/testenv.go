// Package testenv decides, in one place, what a test does when something it needs from the
// machine is missing (HAProxy, promtool, a control plane, Chromium, docker-compose...):
// locally it is skipped, with how to get it; in CI (.ci/run exports CI=true) it fails,
// so a CI run never passes by skipping. It also builds the programs a test binary runs,
// once, from TestMain, with no deadline (a cold build on a busy machine is slow, and a
// killed build is a false failure).
package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// CI reports whether the tests run in CI: CI is set to anything but "", "0" or "false".
func CI() bool {
	v := os.Getenv("CI")
	if b, err := strconv.ParseBool(v); err == nil {
		return b
	}
	return v != ""
}

// tool is what testenv knows about a program: where it lives besides $PATH, other names
// it goes by, and the Debian package that installs it.
type tool struct {
	dirs    []string
	aliases []string
	install string
}

func known(name string) tool {
	switch name {
	case "haproxy":
		return tool{dirs: []string{"/usr/sbin"}, install: "apt-get install haproxy"}
	case "promtool":
		return tool{install: "apt-get install prometheus"}
	case "chromium":
		return tool{aliases: []string{"chromium-browser", "google-chrome", "headless_shell"}, install: "apt-get install chromium"}
	case "docker-compose":
		return tool{install: "apt-get install docker-compose"}
	case "kubectl", "kube-apiserver", "etcd", "kube-scheduler":
		return tool{install: "export KUBEBUILDER_ASSETS=$(hack/kubebin/build.sh)"}
	}
	return tool{}
}

// Look returns the path of the program name, searched in dirs, then in the places testenv
// knows for it, then in $PATH (under its other names too).
func Look(name string, dirs ...string) (string, error) {
	tl := known(name)
	for _, d := range append(dirs, tl.dirs...) {
		if d == "" {
			continue
		}
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	for _, n := range append([]string{name}, tl.aliases...) {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
	}
	msg := name + " not found"
	if tl.install != "" {
		msg += " (" + tl.install + ")"
	}
	return "", errors.New(msg)
}

// Require returns the path of the program name (see Look), or stops the test: it fails
// in CI and is skipped elsewhere.
func Require(t testing.TB, name string, dirs ...string) string {
	t.Helper()
	p, err := Look(name, dirs...)
	if err != nil {
		Missing(t, "%v", err)
	}
	return p
}

// Missing stops a test that lacks something it needs: t.Fatal in CI, t.Skip elsewhere.
// Every such decision in the tree goes through here.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if CI() {
		t.Fatalf("%s (required in CI)", msg)
	}
	t.Skipf("%s: skipped (in CI this fails)", msg)
}

// Context returns a context that ends shortly before the test's own deadline (go test
// -timeout), leaving time to report what was going on, and with the test. Use it instead
// of a fixed timeout that a busy machine can outrun.
func Context(t testing.TB) context.Context {
	t.Helper()
	ctx := t.Context()
	if tt, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := tt.Deadline(); ok {
			margin := min(30*time.Second, time.Until(dl)/10)
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, dl.Add(-margin))
			t.Cleanup(cancel)
		}
	}
	return ctx
}

// ModuleRoot returns the directory of the go.mod enclosing the working directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testenv: no go.mod above the working directory")
		}
		dir = parent
	}
}

// GoBuild builds the main package pkg (relative to the module root, e.g.
// "./cmd/couchwatch") into dir with the extra environment env and go build flags, and
// returns the binary's path. It has no deadline: call it from TestMain, once per test
// binary, never under a test's timeout.
func GoBuild(dir, pkg string, env []string, flags ...string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, filepath.Base(pkg))
	args := append(append([]string{"build"}, flags...), "-o", bin, pkg)
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, out.String())
	}
	if d := time.Since(start); d > time.Minute {
		fmt.Fprintf(os.Stderr, "testenv: go build %s took %s\n", pkg, d.Round(time.Second))
	}
	return bin, nil
}

// Main runs a test binary whose programs are built once: setup builds them into dir (a
// temporary directory removed afterwards), typically with GoBuild. A setup error fails
// the whole binary with the build's output. Use as os.Exit(testenv.Main(m, setup)).
func Main(m *testing.M, setup func(dir string) error) int {
	dir, err := os.MkdirTemp("", "couchwatch-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "testenv:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := setup(dir); err != nil {
		fmt.Fprintln(os.Stderr, "testenv:", err)
		return 1
	}
	return m.Run()
}
