package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/certpush/certpush/internal/inventory"
	"github.com/certpush/certpush/internal/push"
	"github.com/certpush/certpush/internal/testfleet"
)

// Methods of the round-trip runs.
const (
	rHandshake = "handshake"
	rFloor     = "floor"
	rPush      = "push"
	rRerun     = "rerun"
)

var rttTitle = map[string]string{
	rHandshake: "SSH handshake only (connect, key exchange, auth, close)",
	rFloor:     "floor: 1 connection, one session running `true`",
	rPush:      "certpush push + install (in process)",
	rRerun:     "certpush push, unchanged (in process)",
}

// rttSample is one timed run behind the delay proxies.
type rttSample struct {
	RTTms  int     `json:"rtt_ms"`
	Size   int     `json:"size"`
	Method string  `json:"method"`
	WallMS float64 `json:"wall_ms"`
	// Turns is the median over the hosts of the request-response turns
	// the proxy saw on each host's connection.
	Turns float64 `json:"turns_per_host"`
	Conns int     `json:"connections"`
}

// rttRun measures, for every round-trip time in c.rtts and every size in
// c.rttSizes (all hosts of a size at once), the handshake alone, the
// floor, and certpush's push and unchanged re-run in process, each host
// behind its own delay proxy.
func (b *bench) rttRun(ctx context.Context) ([]rttSample, error) {
	maxN := slices.Max(b.c.rttSizes)
	auth, closeAuth, err := push.Auth(b.fleet.Identity, "")
	if err != nil {
		return nil, err
	}
	defer closeAuth()
	var samples []rttSample
	for _, rtt := range b.c.rtts {
		d := time.Duration(rtt) * time.Millisecond
		proxies := make([]*delayProxy, maxN)
		var kh bytes.Buffer
		keys := map[string]ssh.PublicKey{}
		hosts := make([]inventory.Host, maxN)
		for i, h := range b.fleet.Hosts[:maxN] {
			p, err := newDelayProxy(h.SSHAddr(), d)
			if err != nil {
				return nil, err
			}
			defer p.Close()
			proxies[i] = p
			_, port, _ := net.SplitHostPort(p.Addr)
			pn, _ := strconv.Atoi(port)
			kh.WriteString(knownhosts.Line([]string{knownhosts.Normalize(p.Addr)}, h.HostKey) + "\n")
			keys[p.Addr] = h.HostKey
			hosts[i] = inventory.Host{Name: h.Name, Address: "127.0.0.1", Port: pn, User: b.fleet.User, Incoming: h.Incoming, Command: h.Command}
		}
		khPath := filepath.Join(b.dir, fmt.Sprintf("known_hosts-rtt%d", rtt))
		if err := os.WriteFile(khPath, kh.Bytes(), 0o644); err != nil {
			return nil, err
		}
		cfg := *b.clientCfg
		cfg.HostKeyCallback = func(addr string, _ net.Addr, key ssh.PublicKey) error {
			if k := keys[addr]; k == nil || !bytes.Equal(k.Marshal(), key.Marshal()) {
				return fmt.Errorf("%s: unexpected host key", addr)
			}
			return nil
		}
		methods := []string{rHandshake, rFloor, rPush}
		for rep := range b.c.reps {
			for _, n := range b.c.rttSizes {
				order := append(slices.Clone(methods[rep%len(methods):]), methods[:rep%len(methods)]...)
				for _, m := range order {
					run := []string{m}
					if m == rPush {
						run = append(run, rRerun)
					}
					for _, m := range run {
						s, err := b.rttMeasure(ctx, m, n, rtt, &cfg, hosts[:n], proxies[:n], auth, khPath)
						if err != nil {
							return nil, fmt.Errorf("rtt %d ms, %s at %d hosts: %w", rtt, m, n, err)
						}
						b.log.Info("rtt run", "rtt_ms", rtt, "size", n, "method", m, "rep", rep+1,
							"wall_ms", fmt.Sprintf("%.1f", s.WallMS), "turns_per_host", s.Turns)
						samples = append(samples, s)
					}
				}
			}
		}
		for _, p := range proxies {
			p.Close()
		}
	}
	return samples, nil
}

func (b *bench) rttMeasure(ctx context.Context, method string, n, rtt int, cfg *ssh.ClientConfig, hosts []inventory.Host, proxies []*delayProxy, auth []ssh.AuthMethod, kh string) (rttSample, error) {
	s := rttSample{RTTms: rtt, Size: n, Method: method}
	for _, p := range proxies {
		p.take()
	}
	var pusher *push.Pusher
	if method == rPush || method == rRerun {
		if method == rPush {
			if _, err := b.newBundle(); err != nil {
				return s, err
			}
		}
		var err error
		pusher, err = push.New(b.cur, push.Options{Auth: auth, KnownHosts: kh, Parallel: n, Timeout: 2 * time.Minute, Install: true})
		if err != nil {
			return s, err
		}
	}
	t0 := time.Now()
	var err error
	switch method {
	case rHandshake, rFloor:
		err = b.dialAll(ctx, cfg, hosts, method == rFloor)
	default:
		want := push.Installed
		if method == rRerun {
			want = push.Unchanged
		}
		for _, r := range pusher.Run(ctx, hosts) {
			if r.Result != want {
				err = fmt.Errorf("%s: %s, want %s: %v", r.Host, r.Result, want, r.Err)
				break
			}
		}
	}
	s.WallMS = float64(time.Since(t0).Microseconds()) / 1000
	if err != nil {
		return s, err
	}
	if method == rPush {
		var fh []*testfleet.Host
		for _, h := range hosts {
			fh = append(fh, b.fleet.Host(h.Name))
		}
		if err := b.check(fh); err != nil {
			return s, fmt.Errorf("check: %w", err)
		}
	}
	// The proxies record a connection once both of its sides are done.
	var turns []float64
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; i < len(proxies); {
		ts := proxies[i].take()
		for _, t := range ts {
			turns = append(turns, float64(t.turns()))
		}
		if len(ts) > 0 || time.Now().After(deadline) {
			i++
			continue
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.Conns = len(turns)
	s.Turns = median(turns)
	return s, nil
}

// dialAll connects to every host at once; with session set it runs
// `true` in one session, else it closes right after the handshake.
func (b *bench) dialAll(ctx context.Context, cfg *ssh.ClientConfig, hosts []inventory.Host, session bool) error {
	errs := make(chan error, len(hosts))
	for _, h := range hosts {
		go func() {
			c, err := ssh.Dial("tcp", h.SSHAddress(), cfg)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			if !session {
				errs <- nil
				return
			}
			sess, err := c.NewSession()
			if err != nil {
				errs <- err
				return
			}
			defer sess.Close()
			errs <- sess.Run("true")
		}()
	}
	var first error
	for range hosts {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// rttReport writes the round-trip table and its checks.
func (b *bench) rttReport(samples []rttSample, took time.Duration) error {
	type key struct {
		rtt, n int
		m      string
	}
	walls := map[key][]float64{}
	turns := map[key][]float64{}
	for _, s := range samples {
		k := key{s.RTTms, s.Size, s.Method}
		walls[k] = append(walls[k], s.WallMS)
		turns[k] = append(turns[k], s.Turns)
	}
	w := func(rtt, n int, m string) float64 { return median(walls[key{rtt, n, m}]) }
	t := func(rtt, n int, m string) float64 { return median(turns[key{rtt, n, m}]) }
	var md bytes.Buffer
	fmt.Fprintf(&md, "Run of %s, %d repetitions of each (RTT, size, method), interleaved; medians; every host of a size at once; %s in all.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), b.c.reps, took.Round(time.Second))
	fmt.Fprintf(&md, "Machine: %s\n\n", machine())
	fmt.Fprintf(&md, "| RTT (ms) | N | method | median wall (ms) | runs (ms) | turns/host (proxy) | turns after the handshake | wall - floor (ms) | (wall - floor) / RTT |\n")
	fmt.Fprintf(&md, "|---:|---:|---|---:|---|---:|---:|---:|---:|\n")
	for _, rtt := range b.c.rtts {
		for _, n := range b.c.rttSizes {
			floor := w(rtt, n, rFloor)
			hs := t(rtt, n, rHandshake)
			for _, m := range []string{rHandshake, rFloor, rPush, rRerun} {
				k := key{rtt, n, m}
				if walls[k] == nil {
					continue
				}
				var runs []string
				for _, x := range walls[k] {
					runs = append(runs, fmt.Sprintf("%.0f", x))
				}
				per := "-"
				if rtt > 0 {
					per = fmt.Sprintf("%.2f", (w(rtt, n, m)-floor)/float64(rtt))
				}
				fmt.Fprintf(&md, "| %d | %d | %s | %.1f | %s | %.0f | %.0f | %.1f | %s |\n",
					rtt, n, rttTitle[m], w(rtt, n, m), joinComma(runs), t(rtt, n, m), t(rtt, n, m)-hs, w(rtt, n, m)-floor, per)
			}
		}
	}
	fmt.Fprintf(&md, "\nChecks: push + install <= floor + 2 RTT (same RTT and size), and the round trips push + install costs beyond the floor's, from the wall times: ((push - floor) at this RTT - (push - floor) at RTT 0) / RTT, and from the proxy's turns:\n\n")
	fmt.Fprintf(&md, "| RTT (ms) | N | push (ms) | floor + 2 RTT (ms) | met | extra RTTs from wall | extra turns (proxy) |\n|---:|---:|---:|---:|---|---:|---:|\n")
	for _, rtt := range b.c.rtts {
		if rtt == 0 {
			continue
		}
		for _, n := range b.c.rttSizes {
			p, lim := w(rtt, n, rPush), w(rtt, n, rFloor)+2*float64(rtt)
			met := "yes"
			if p > lim {
				met = "**no**"
			}
			extra := "-"
			if walls[key{0, n, rPush}] != nil {
				extra = fmt.Sprintf("%.2f", ((p-w(rtt, n, rFloor))-(w(0, n, rPush)-w(0, n, rFloor)))/float64(rtt))
			}
			fmt.Fprintf(&md, "| %d | %d | %.1f | %.1f | %s | %s | %.0f |\n", rtt, n, p, lim, met, extra, t(rtt, n, rPush)-t(rtt, n, rFloor))
		}
	}
	fmt.Fprintf(&md, "\nLoad average before / after: %s / %s\n", b.loadStart, loadavg())
	fmt.Print(md.String())
	if b.c.jsonOut != "" {
		data, err := json.MarshalIndent(map[string]any{"machine": machine(), "rtt_samples": samples}, "", "  ")
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

func joinComma(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += ", "
		}
		out += x
	}
	return out
}
