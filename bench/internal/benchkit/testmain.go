package benchkit

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/medic/couchwatch/internal/testenv"
)

// TestMain is the body of a benchmark package's TestMain: it builds couchwatch once, as
// BuildCouchwatch does, before any test runs and with no deadline, and points BinEnv at
// it. Every run in the tests then uses that binary, so no test's deadline covers (or
// kills) a cold build on a busy machine. Use as os.Exit(benchkit.TestMain(m)).
func TestMain(m *testing.M) int {
	return testenv.Main(m, func(dir string) error {
		if os.Getenv(BinEnv) != "" {
			return nil
		}
		bin, err := BuildCouchwatch(context.Background(), dir)
		if err != nil {
			return err
		}
		if err := os.Setenv(BinEnv, bin); err != nil {
			return fmt.Errorf("set %s: %w", BinEnv, err)
		}
		return nil
	})
}

// TestLog is a harness's progress writer in a test: each write becomes one t.Log line.
type TestLog struct{ T testing.TB }

func (w TestLog) Write(p []byte) (int, error) {
	w.T.Helper()
	w.T.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
