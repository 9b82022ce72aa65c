package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

type cell struct {
	walls                []float64
	loginsMin, loginsMax int
	conns                int
	clientCPU, total     []float64
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// spread is (max-min)/median, a measure of noise.
func spread(v []float64) float64 {
	m := median(v)
	if m == 0 {
		return 0
	}
	return (slices.Max(v) - slices.Min(v)) / m
}

func (b *bench) report(samples []sample, took time.Duration) error {
	cells := map[string]map[int]*cell{}
	for _, s := range samples {
		if cells[s.Method] == nil {
			cells[s.Method] = map[int]*cell{}
		}
		c := cells[s.Method][s.Size]
		if c == nil {
			c = &cell{loginsMin: 1 << 30}
			cells[s.Method][s.Size] = c
		}
		c.walls = append(c.walls, s.WallMS)
		c.clientCPU = append(c.clientCPU, s.ClientCPU)
		c.total = append(c.total, s.TotalCPU)
		c.loginsMin = min(c.loginsMin, s.LoginsMin)
		c.loginsMax = max(c.loginsMax, s.LoginsMax)
		c.conns = max(c.conns, s.Conns)
	}
	var md bytes.Buffer
	fmt.Fprintf(&md, "Run of %s, %d repetitions of each (size, method), interleaved; medians; %d hosts in flight; %s in all.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), b.c.reps, b.c.parallel, took.Round(time.Second))
	fmt.Fprintf(&md, "Machine: %s\n\n", machine())
	fmt.Fprintf(&md, "Fleet directory (every host's certnode root and incoming) on %s.\n\n", fsType(b.dir))
	fmt.Fprintf(&md, "| method | N | median wall (ms) | ms/host | x floor | runs (ms) | spread | SSH logins/host | machine CPU ms/host | client CPU ms/host |\n")
	fmt.Fprintf(&md, "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|\n")
	for _, m := range []string{mFloor, mPush, mRerun, mPushB, mRerunB, mFloorLP, mPushLP, mRerunLP, mPSSHD, mPSSH, mRsync} {
		for _, n := range b.c.sizes {
			c := cells[m][n]
			if c == nil {
				continue
			}
			// The least-privilege rows are against that account's floor.
			fm := mFloor
			if m == mFloorLP || m == mPushLP || m == mRerunLP {
				fm = mFloorLP
			}
			floor := median(cells[fm][n].walls)
			w := median(c.walls)
			var runs []string
			for _, x := range c.walls {
				runs = append(runs, fmt.Sprintf("%.0f", x))
			}
			logins := fmt.Sprint(c.loginsMin)
			if c.loginsMax != c.loginsMin {
				logins = fmt.Sprintf("%d-%d", c.loginsMin, c.loginsMax)
			}
			fmt.Fprintf(&md, "| %s | %d | %.0f | %.2f | %.2f | %s | %.0f%% | %s | %.2f | %.2f |\n",
				methodTitle[m], n, w, w/float64(n), w/floor, strings.Join(runs, ", "), 100*spread(c.walls), logins,
				median(c.total)/float64(n), median(c.clientCPU)/float64(n))
		}
	}
	// Targets at N=100 (or the size nearest to it).
	n := b.c.sizes[0]
	for _, s := range b.c.sizes {
		if abs(s-100) < abs(n-100) {
			n = s
		}
	}
	med := func(m string) float64 {
		if c := cells[m][n]; c != nil {
			return median(c.walls)
		}
		return 0
	}
	fmt.Fprintf(&md, "\nTargets at N=%d (same run):\n\n", n)
	fmt.Fprintf(&md, "| target | measured | met |\n|---|---:|---|\n")
	target := func(name string, v float64, ok bool) {
		yes := "yes"
		if !ok {
			yes = "**no**"
		}
		if v == 0 {
			yes = "not measured"
		}
		fmt.Fprintf(&md, "| %s | %.2f | %s |\n", name, v, yes)
	}
	floor := med(mFloor)
	target("push+install <= 1.25x floor", med(mPush)/floor, med(mPush)/floor <= 1.25)
	target("unchanged re-run <= 1.1x floor", med(mRerun)/floor, med(mRerun)/floor <= 1.1)
	ratio := func(name, m string, min float64) {
		if med(m) > 0 && med(mPush) > 0 {
			target(name, med(m)/med(mPush), med(m)/med(mPush) >= min)
		} else {
			target(name, 0, false)
		}
	}
	ratio("rsync loop (OpenSSH defaults) / push >= 25", mRsync, 25)
	ratio("pssh (OpenSSH defaults) / push >= 8", mPSSHD, 8)
	ratio("pssh (curve25519) / push >= 3.5", mPSSH, 3.5)
	if med(mFloorLP) > 0 {
		target("least privilege push+install <= 1.5x its floor", med(mPushLP)/med(mFloorLP), med(mPushLP)/med(mFloorLP) <= 1.5)
		target("least privilege unchanged re-run <= 1.3x its floor", med(mRerunLP)/med(mFloorLP), med(mRerunLP)/med(mFloorLP) <= 1.3)
		target("least privilege push / root-path push", med(mPushLP)/med(mPush), true)
	}
	fmt.Fprintf(&md, "\nLoad average before / after: %s / %s\n", b.loadStart, loadavg())
	fmt.Print(md.String())

	if b.c.jsonOut != "" {
		data, err := json.MarshalIndent(map[string]any{"machine": machine(), "samples": samples}, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(b.c.jsonOut, append(data, '\n'), 0o644); err != nil {
			return err
		}
	}
	if b.c.out != "" {
		return replaceSection(b.c.out, b.c.section, md.String())
	}
	return nil
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// replaceSection replaces what is between <!-- name:begin --> and
// <!-- name:end --> in the markdown file path.
func replaceSection(path, name, body string) error {
	beginMark, endMark := "<!-- "+name+":begin -->", "<!-- "+name+":end -->"
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(data)
	i := strings.Index(s, beginMark)
	j := strings.Index(s, endMark)
	if i < 0 || j < i {
		return errors.New(path + ": no " + beginMark + " ... " + endMark + " section")
	}
	s = s[:i+len(beginMark)] + "\n" + body + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}

func loadavg() string {
	data, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// machine describes the machine: cores, CPU, memory, kernel, versions.
func machine() string {
	cpu := "?"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := "?"
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				var kb int
				fmt.Sscan(v, &kb)
				mem = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	kernel := firstLine("uname", "-r")
	sshv := firstLine("ssh", "-V")
	rsyncv := firstLine("rsync", "--version")
	psshv := firstLine("parallel-ssh", "--version")
	return fmt.Sprintf("%d cores (nproc), %s, %s RAM, Linux %s, %s, %s, parallel-ssh %s, %s",
		runtime.NumCPU(), cpu, mem, kernel, sshv, rsyncv, psshv, runtime.Version())
}

func firstLine(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil && len(out) == 0 {
		return name + " ?"
	}
	l, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(l)
}

// fsType names the file system dir is on.
func fsType(dir string) string {
	out, err := exec.Command("findmnt", "-n", "-o", "FSTYPE", "-T", dir).Output()
	if err != nil {
		if out, err = exec.Command("stat", "-f", "-c", "%T", dir).Output(); err != nil {
			return dir
		}
	}
	return dir + " (" + strings.TrimSpace(string(out)) + ")"
}
