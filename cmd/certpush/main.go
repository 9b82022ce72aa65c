// Command certpush obtains certificates, turns them into signed bundles and
// pushes them to the hosts that serve them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/certpush/certpush/internal/cli"
	"github.com/certpush/certpush/internal/flock"
	"github.com/certpush/certpush/internal/inventory"
)

// version is set at link time: make passes -X main.version=VERSION.
var version string

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// env holds what every command needs.
type env struct {
	stdout, stderr io.Writer
	log            *slog.Logger
	level          *slog.LevelVar // raised by --quiet
	notes          io.Writer      // progress notes: stdout, stderr with --json, nowhere with --quiet
	configPath     string
	getenv         func(string) string
	progressShown  bool
	newKey         bool              // obtain --new-key
	fences         map[string]string // renew --lease: publish fenced on current's ETag
	// out serializes the log's writes with those of another goroutine
	// (catchUp's retries during an order).
	out *sync.Mutex
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &env{stdout: stdout, stderr: stderr, level: new(slog.LevelVar), notes: stdout, getenv: os.Getenv, log: slog.New(slog.DiscardHandler), out: new(sync.Mutex)}
	p := &cli.Program{
		Name:    "certpush",
		Summary: "certpush keeps one TLS certificate per domain valid on every host that serves it.",
		Footer: `The config is FILE, else $CERTPUSH_CONFIG, else /etc/certpush/certpush.yaml.
Exit status: 0 done (or nothing to do), 1 some hosts or certificates failed,
2 bad usage or configuration.`,
		Commands: []*cli.Command{
			e.initCommand(),
			e.pushCommand(),
			e.publishCommand(),
			e.importCommand(),
			e.hookCommand(),
			e.obtainCommand(),
			e.renewCommand(),
			e.revokeCommand(),
			e.syncCommand(),
			e.statusCommand(),
			e.trustCommand(),
			e.keyCommand(),
			{
				Name:  "version",
				Short: "print the version",
				Run: func(context.Context, []string) error {
					fmt.Fprintln(stdout, "certpush", cli.Version(version))
					return nil
				},
			},
		},
		Stdout: stdout,
		Stderr: stderr,
		Start:  e.start,
	}
	return p.Run(ctx, args)
}

// start applies the global flags: results are printed, and only
// warnings and errors are logged unless -v asks for more.
func (e *env) start(g cli.Globals) {
	e.level.Set(g.Level)
	e.log = g.Logger(&lockedWriter{mu: e.out, w: e.stderr}, e.level)
	e.configPath = g.Config
	if e.configPath == "" {
		e.configPath = e.getenv("CERTPUSH_CONFIG")
	}
	if e.configPath == "" {
		e.configPath = "/etc/certpush/certpush.yaml"
	}
}

// note prints a line about what a command did, e.g. "new bundle".
func (e *env) note(format string, args ...any) {
	fmt.Fprintf(e.notes, format+"\n", args...)
}

// quietly applies --json and --quiet: notes move to stderr (stdout is
// for the JSON) or are dropped, and only warnings and errors are logged.
func (e *env) quietly(pf pushFlags) {
	if pf.json {
		e.notes = e.stderr
	}
	if pf.quiet {
		e.notes = io.Discard
		if e.level.Level() < slog.LevelWarn {
			e.level.Set(slog.LevelWarn)
		}
	}
}

// loadConfig reads the config; any problem with it is a usage error.
func (e *env) loadConfig() (*inventory.Config, error) {
	restore := lowGC()
	cfg, err := inventory.Load(e.configPath)
	restore()
	if errors.Is(err, iofs.ErrNotExist) {
		return nil, cli.Usage(err, "pass --config FILE or set CERTPUSH_CONFIG (an example is inventory/certpush.yaml)")
	}
	if err != nil {
		return nil, cli.Usage(err)
	}
	if err := checkProfileLimits(cfg); err != nil {
		return nil, cli.Usage(err)
	}
	return cfg, nil
}

// lockFlags choose how long a command that changes the state directory
// waits for another run that holds it.
type lockFlags struct {
	noWait bool
	wait   time.Duration
}

func (l *lockFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&l.noWait, "no-wait", false, "fail at once if another certpush run holds the state directory")
	fs.DurationVar(&l.wait, "lock-wait", 10*time.Minute, "how long to wait for another certpush run that holds the state directory")
}

// lockedConfig loads the config and takes the lock of its state
// directory, so that two runs (a timer's renew and a hand-run push, say)
// never change it at once. unlock releases it.
func (e *env) lockedConfig(ctx context.Context, lf lockFlags) (cfg *inventory.Config, unlock func(), err error) {
	if cfg, err = e.loadConfig(); err != nil {
		return nil, nil, err
	}
	wait := lf.wait
	if lf.noWait {
		wait = 0
	}
	path := filepath.Join(cfg.StateDir, ".lock")
	lctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	l, err := flock.Acquire(lctx, path, 0o700, func(pid int) {
		e.log.Warn("waiting for another certpush run to finish", "pid", pid, "lock", path, "up_to", wait)
	})
	if he, ok := errors.AsType[*flock.HeldError](err); ok && ctx.Err() == nil {
		who := "another certpush run"
		if he.PID > 0 {
			who += fmt.Sprintf(" (pid %d)", he.PID)
		}
		return nil, nil, fmt.Errorf("state directory %s is in use by %s; gave up after %s: run again later, or wait longer with --lock-wait", cfg.StateDir, who, wait)
	}
	if err != nil {
		return nil, nil, err
	}
	return cfg, l.Release, nil
}
