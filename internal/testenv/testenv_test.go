package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestCI(t *testing.T) {
	for v, want := range map[string]bool{"": false, "false": false, "0": false, "true": true, "1": true, "yes": true} {
		t.Setenv("CI", v)
		if got := CI(); got != want {
			t.Errorf("CI=%q: CI() = %v, want %v", v, got, want)
		}
	}
}

func TestLook(t *testing.T) {
	dir := t.TempDir()
	prog := filepath.Join(dir, "couchwatch-testenv-prog")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if p, err := Look("couchwatch-testenv-prog", "", dir); err != nil || p != prog {
		t.Fatalf("Look in dir = %q, %v; want %s", p, err, prog)
	}
	if _, err := Look("sh"); err != nil {
		t.Fatalf("Look(sh) in $PATH: %v", err)
	}
	_, err := Look("promtool-that-is-not", dir)
	if err == nil || err.Error() != "promtool-that-is-not not found" {
		t.Fatalf("Look(missing) = %v", err)
	}
}

// TestHelperMissing is run by TestMissing in a child process; alone it does nothing.
func TestHelperMissing(t *testing.T) {
	if os.Getenv("TESTENV_HELPER") != "1" {
		return
	}
	Require(t, "haproxy", t.TempDir()) // found or not, the next one is missing
	Require(t, "no-such-program-couchwatch")
	t.Log("reached after a missing program")
}

// A missing program fails the test in CI and skips it elsewhere; it never passes on.
func TestMissing(t *testing.T) {
	for _, tc := range []struct {
		ci       string
		wantFail bool
		want     string
	}{
		{"true", true, "no-such-program-couchwatch not found (required in CI)"},
		{"", false, "no-such-program-couchwatch not found: skipped (in CI this fails)"},
	} {
		t.Run("CI="+tc.ci, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperMissing$", "-test.v")
			cmd.Env = append(os.Environ(), "TESTENV_HELPER=1", "CI="+tc.ci, "PATH="+t.TempDir()+":/usr/bin:/bin")
			out, err := cmd.CombinedOutput()
			if failed := err != nil; failed != tc.wantFail {
				t.Fatalf("failed = %v, want %v:\n%s", failed, tc.wantFail, out)
			}
			if !strings.Contains(string(out), tc.want) || strings.Contains(string(out), "reached after") {
				t.Fatalf("output lacks %q, or the test went on:\n%s", tc.want, out)
			}
		})
	}
}

func TestGoBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program")
	}
	dir := t.TempDir()
	bin, err := GoBuild(dir, "./internal/testenv/testdata/hello", nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin).Output()
	if err != nil || string(out) != "hello\n" {
		t.Fatalf("built program: %q, %v", out, err)
	}
}

func TestLogBuffer(t *testing.T) {
	var unbounded LogBuffer
	capped := LogBuffer{Max: 5}
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 100 {
				for _, b := range []*LogBuffer{&unbounded, &capped} {
					if n, err := b.Write([]byte("ab")); n != 2 || err != nil {
						t.Errorf("Write = %d, %v", n, err)
					}
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
	if got := len(unbounded.String()); got != 800 {
		t.Errorf("unbounded kept %d bytes, want 800", got)
	}
	if got := capped.String(); got != "ababa" {
		t.Errorf("capped kept %q, want ababa", got)
	}
}
