package benchkit

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// ClockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat: 100 on every
// Linux architecture Go supports.
const ClockTicks = 100

// ProcSample is a process's CPU time and memory at one instant.
type ProcSample struct {
	At       time.Time
	CPUTicks int64 // utime + stime
	RSSKiB   int64 // VmRSS
	HWMKiB   int64 // VmHWM: peak RSS
	AnonKiB  int64 // RssAnon: heap, stacks (what the process allocated)
	FileKiB  int64 // RssFile: pages of mapped files, mostly the executable itself
}

// ReadProc reads /proc/<pid>/stat and /proc/<pid>/status.
func ReadProc(pid int) (ProcSample, error) {
	s := ProcSample{At: time.Now()}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("read stat of %d: %w", pid, err)
	}
	// The command name (field 2) may hold spaces: fields are counted after its ')'.
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return s, fmt.Errorf("stat of %d: no ')'", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	// After ')': state is field 3, utime field 14, stime field 15 (1-based, man proc).
	if len(f) < 13 {
		return s, fmt.Errorf("stat of %d: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return s, fmt.Errorf("stat of %d: utime %q stime %q", pid, f[11], f[12])
	}
	s.CPUTicks = ut + st
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("read status of %d: %w", pid, err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			s.RSSKiB = n
		case "VmHWM":
			s.HWMKiB = n
		case "RssAnon":
			s.AnonKiB = n
		case "RssFile":
			s.FileKiB = n
		}
	}
	return s, nil
}

// Usage is a process's resource use over a window.
type Usage struct {
	Window     time.Duration
	CPUPercent float64 // of one core
	RSSMiB     float64 // at the end
	PeakMiB    float64 // VmHWM at the end
	AnonMiB    float64 // RssAnon at the end
	FileMiB    float64 // RssFile at the end
}

// UsageBetween computes the CPU share and memory from two samples of one process.
func UsageBetween(a, b ProcSample) Usage {
	w := b.At.Sub(a.At)
	u := Usage{Window: w, RSSMiB: float64(b.RSSKiB) / 1024, PeakMiB: float64(b.HWMKiB) / 1024,
		AnonMiB: float64(b.AnonKiB) / 1024, FileMiB: float64(b.FileKiB) / 1024}
	if w > 0 {
		u.CPUPercent = 100 * float64(b.CPUTicks-a.CPUTicks) / ClockTicks / w.Seconds()
	}
	return u
}
