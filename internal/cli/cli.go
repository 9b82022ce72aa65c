// Package cli is the command-line skeleton both binaries share: one table
// of commands drives dispatch, help and usage text; one usage error type
// is printed as "PROG: error: ..." and "PROG: hint: ..."; one flag parser
// lets flags follow arguments and honours "--".
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"

	"github.com/certpush/certpush/internal/yamlconf"
)

// A Command is one subcommand of a program, in the spirit of the go
// command's base.Command. Build the table inside run, so that flag values
// live in closures, not in package variables.
type Command struct {
	Name  string // e.g. "push"
	Args  string // the arguments after the flags, e.g. "[NAME...]"
	Short string // one line for the command list
	Long  string // shown by 'PROG help NAME' and 'PROG NAME --help'
	// Flags holds the command's flags; declare them before Run is called.
	Flags flag.FlagSet
	// Run does the work with the positional arguments. It returns nil,
	// ErrReported (failures already printed: exit 1), a *UsageError (exit
	// 2) or any other error (printed: exit 1).
	Run func(ctx context.Context, args []string) error
}

// Globals are the flags every command accepts before its name.
type Globals struct {
	Config  string     // --config FILE
	Level   slog.Level // warn; -v info; -vv or --debug debug
	LogJSON bool       // --log-json
}

// Logger returns the logger the globals ask for, writing to w at level.
func (g Globals) Logger(w io.Writer, level slog.Leveler) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if g.LogJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// A Program is a binary: its name, what it is, its commands.
type Program struct {
	Name     string // "certpush"
	Summary  string // first line of the usage text
	Footer   string // after the command list: config lookup, exit status
	Commands []*Command
	Stdout   io.Writer
	Stderr   io.Writer
	// Start runs after the global flags are parsed and before the
	// command; it sets up what the commands share.
	Start func(Globals)
}

// ErrReported means a command has printed its failures: exit status 1
// without a further message.
var ErrReported = errors.New("failures were reported")

// A UsageError is bad usage or configuration: exit status 2. Hints tell
// the user what to do about it.
type UsageError struct {
	Err   error
	Hints []string
}

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef returns a *UsageError with a formatted message.
func Usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// Usage wraps err as a *UsageError with hints; a nil err stays nil, and
// an error that already is one gains the hints.
func Usage(err error, hints ...string) error {
	if err == nil {
		return nil
	}
	var ue *UsageError
	if errors.As(err, &ue) {
		return &UsageError{Err: ue.Err, Hints: append(append([]string(nil), ue.Hints...), hints...)}
	}
	return &UsageError{Err: err, Hints: hints}
}

// Run parses the global flags in args, then runs the command they name,
// and returns the exit status.
func (p *Program) Run(ctx context.Context, args []string) int {
	g, rest, err := p.parseGlobals(args)
	if errors.Is(err, flag.ErrHelp) {
		p.usage(p.Stdout)
		return 0
	}
	if err != nil {
		return p.report(err)
	}
	if len(rest) == 0 {
		p.usage(p.Stderr)
		return 2
	}
	name, rest := rest[0], rest[1:]
	if name == "help" {
		return p.help(rest)
	}
	c := p.lookup(name)
	if c == nil {
		return p.report(&UsageError{Err: fmt.Errorf("unknown command %q", name), Hints: p.suggest(name)})
	}
	pos, err := p.parseCommand(c, rest)
	if errors.Is(err, flag.ErrHelp) {
		p.commandHelp(p.Stdout, c)
		return 0
	}
	if err != nil {
		return p.report(err)
	}
	if p.Start != nil {
		p.Start(g)
	}
	return p.report(c.Run(ctx, pos))
}

func (p *Program) parseGlobals(args []string) (Globals, []string, error) {
	g := Globals{Level: slog.LevelWarn}
	fs := flag.NewFlagSet(p.Name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.StringVar(&g.Config, "config", "", "")
	fs.Var(levelFlag{&g.Level, slog.LevelInfo}, "v", "")
	fs.Var(levelFlag{&g.Level, slog.LevelDebug}, "vv", "")
	fs.Var(levelFlag{&g.Level, slog.LevelDebug}, "debug", "")
	fs.BoolVar(&g.LogJSON, "log-json", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return g, nil, err
		}
		return g, nil, &UsageError{Err: err, Hints: []string{fmt.Sprintf("run '%s help' for usage", p.Name)}}
	}
	return g, fs.Args(), nil
}

// levelFlag is a boolean flag that lowers the log level to at least lvl;
// -v -v is the same as -vv.
type levelFlag struct {
	level *slog.Level
	lvl   slog.Level
}

func (f levelFlag) IsBoolFlag() bool { return true }
func (f levelFlag) String() string   { return "false" }
func (f levelFlag) Set(s string) error {
	if s != "true" {
		return fmt.Errorf("takes no value")
	}
	switch {
	case f.lvl == slog.LevelInfo && *f.level <= slog.LevelInfo:
		*f.level = slog.LevelDebug // a second -v
	case f.lvl < *f.level:
		*f.level = f.lvl
	}
	return nil
}

func (p *Program) parseCommand(c *Command, args []string) ([]string, error) {
	c.Flags.Init(p.Name+" "+c.Name, flag.ContinueOnError)
	c.Flags.SetOutput(io.Discard)
	c.Flags.Usage = func() {}
	pos, err := ParseInterleaved(&c.Flags, args)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		return nil, &UsageError{Err: err, Hints: []string{fmt.Sprintf("run '%s %s --help' for its flags", p.Name, c.Name)}}
	}
	return pos, err
}

// ParseInterleaved parses flags that may come before, between or after
// the positional arguments, which it returns. Everything after "--" is
// positional.
func ParseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		// flag.Parse drops a "--" it stops at; see it first.
		i := 0
		for i < len(args) && args[i] != "--" && !isFlag(args[i]) {
			i++
		}
		pos = append(pos, args[:i]...)
		args = args[i:]
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		// args[0] is a flag: parse until the next positional argument.
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) < len(args) && len(rest) > 0 && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		args = rest
	}
}

// isFlag reports whether flag.Parse would take arg for a flag.
func isFlag(arg string) bool {
	return len(arg) >= 2 && arg[0] == '-' && arg != "--"
}

// report prints err as the program's error output and returns the exit
// status for it.
func (p *Program) report(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrReported):
		return 1
	}
	fmt.Fprintf(p.Stderr, "%s: error: %v\n", p.Name, err)
	var ue *UsageError
	if !errors.As(err, &ue) {
		return 1
	}
	for _, h := range ue.Hints {
		fmt.Fprintf(p.Stderr, "%s: hint: %s\n", p.Name, h)
	}
	return 2
}

func (p *Program) lookup(name string) *Command {
	for _, c := range p.Commands {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// suggest names the command a mistyped name probably meant.
func (p *Program) suggest(name string) []string {
	names := make([]string, len(p.Commands))
	for i, c := range p.Commands {
		names[i] = c.Name
	}
	if s := yamlconf.Closest(name, names); s != "" {
		return []string{fmt.Sprintf("did you mean '%s %s'?", p.Name, s)}
	}
	return []string{fmt.Sprintf("run '%s help' for the list of commands", p.Name)}
}

func (p *Program) help(args []string) int {
	switch len(args) {
	case 0:
		p.usage(p.Stdout)
		return 0
	case 1:
		if c := p.lookup(args[0]); c != nil {
			c.Flags.Init(p.Name+" "+c.Name, flag.ContinueOnError)
			p.commandHelp(p.Stdout, c)
			return 0
		}
		if args[0] == "help" {
			fmt.Fprintf(p.Stdout, "Usage: %s help [COMMAND]\n\nPrint the list of commands, or what COMMAND does and its flags.\n", p.Name)
			return 0
		}
		return p.report(&UsageError{Err: fmt.Errorf("unknown command %q", args[0]), Hints: p.suggest(args[0])})
	}
	return p.report(Usagef("help takes at most one COMMAND"))
}

// usage writes the program's usage text.
func (p *Program) usage(w io.Writer) {
	fmt.Fprintf(w, "%s\n\nUsage:\n  %s [--config FILE] [-v|-vv] [--log-json] COMMAND [ARGS]\n\nCommands:\n", p.Summary, p.Name)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range p.Commands {
		fmt.Fprintf(tw, "  %s\t%s\n", strings.TrimSpace(c.Name+" "+c.Args), c.Short)
	}
	fmt.Fprintf(tw, "  help [COMMAND]\tthis text, or what COMMAND does and its flags\n")
	tw.Flush()
	fmt.Fprintf(w, "\nGlobal flags: --config FILE; -v logs what happens, -vv (or --debug) more;\n--log-json logs as JSON lines. Logs go to stderr, results to stdout.\n")
	if p.Footer != "" {
		fmt.Fprintf(w, "%s\n", strings.TrimRight(p.Footer, "\n"))
	}
	fmt.Fprintf(w, "Run '%s help COMMAND' for a command's flags.\n", p.Name)
}

// commandHelp writes one command's usage, description and flags.
func (p *Program) commandHelp(w io.Writer, c *Command) {
	synopsis := c.Name
	hasFlags := false
	c.Flags.VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		synopsis += " [flags]"
	}
	if c.Args != "" {
		synopsis += " " + c.Args
	}
	fmt.Fprintf(w, "Usage: %s %s\n\n", p.Name, synopsis)
	if c.Long != "" {
		fmt.Fprintf(w, "%s\n", strings.TrimRight(c.Long, "\n"))
	} else {
		fmt.Fprintf(w, "%s.\n", upperFirst(c.Short))
	}
	if hasFlags {
		fmt.Fprintf(w, "\nFlags:\n")
		c.Flags.SetOutput(w)
		c.Flags.PrintDefaults()
		c.Flags.SetOutput(io.Discard)
	}
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
