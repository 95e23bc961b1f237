package benchkit

import (
	"context"
	"errors"
	"slices"
	"testing"
)

func TestSplitList(t *testing.T) {
	for in, want := range map[string][]string{"": nil, "a": {"a"}, " a, ,b ,": {"a", "b"}} {
		if got := SplitList(in); !slices.Equal(got, want) {
			t.Errorf("SplitList(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRunExitCodes(t *testing.T) {
	bad := errors.New("bad")
	ran := false
	tests := []struct {
		name          string
		validate, run error
		code          int
		runs          bool
	}{
		{"ok", nil, nil, 0, true},
		{"bad config does not run", bad, nil, 2, false},
		{"failed run", nil, bad, 1, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ran = false
			code := Run("test", func() error { return tc.validate }, func(ctx context.Context) error {
				ran = ctx.Err() == nil
				return tc.run
			})
			if code != tc.code || ran != tc.runs {
				t.Errorf("code %d ran %v, want %d %v", code, ran, tc.code, tc.runs)
			}
		})
	}
}
