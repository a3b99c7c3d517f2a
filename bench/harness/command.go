package harness

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
)

// Flags are the flags every benchmark command has.
type Flags struct {
	// Abacusd and Loadgen are the binaries the benchmark runs, as absolute paths.
	Abacusd, Loadgen string
	// JSONOut, when set, is a file the results are written to as JSON as well.
	JSONOut string
	// WorkDir keeps the servers' data and logs after the run; empty: a temporary directory,
	// removed at the end.
	WorkDir string
	// LogLevel is that of the benchmark's own messages.
	LogLevel slog.Level
}

// ParseFlags parses args: the common flags into the returned Flags, and the benchmark's own,
// which register adds to the flag set. It then runs validate (the benchmark's checks of its
// own flags) and returns every problem joined, or flag.ErrHelp for -h.
func ParseFlags(name string, args []string, stderr io.Writer, register func(*flag.FlagSet), validate func() error) (Flags, error) {
	var f Flags
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.Abacusd, "abacusd", "bin/abacusd", "abacusd binary")
	fs.StringVar(&f.Loadgen, "loadgen", "bin/abacus-loadgen", "abacus-loadgen binary")
	fs.StringVar(&f.JSONOut, "json-out", "", "also write the results as JSON to this file")
	fs.StringVar(&f.WorkDir, "work-dir", "", "directory for the servers' data and logs, kept afterwards (default: a temporary one, removed)")
	level := fs.String("log-level", "info", "log level of the benchmark's own messages")
	register(fs)
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " ")))
	}
	if err := f.LogLevel.UnmarshalText([]byte(*level)); err != nil {
		errs = append(errs, fmt.Errorf("--log-level %q: %w", *level, err))
	}
	for _, bin := range []struct {
		flag string
		path *string
	}{{"--abacusd", &f.Abacusd}, {"--loadgen", &f.Loadgen}} {
		if err := checkExecutable(bin.flag, bin.path); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, validate())
	return f, errors.Join(errs...)
}

// checkExecutable checks that *path, given with flag, is an executable file, and makes it
// absolute.
func checkExecutable(flag string, path *string) error {
	if *path == "" {
		return fmt.Errorf("%s is required (make bench builds it into bin/)", flag)
	}
	st, err := os.Stat(*path)
	switch {
	case err != nil:
		return fmt.Errorf("%s: %w (make bench builds it into bin/)", flag, err)
	case st.IsDir() || st.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("%s %s is not an executable file", flag, *path)
	}
	abs, err := filepath.Abs(*path)
	if err != nil {
		return fmt.Errorf("%s: %w", flag, err)
	}
	*path = abs
	return nil
}

// Config is a benchmark's configuration: its own flags and, embedded, the common Flags.
type Config interface {
	common() Flags
}

func (f Flags) common() Flags { return f }

// Result is what a benchmark reports: its figures, judged against its targets.
type Result interface {
	// Evaluate judges the figures measured against the targets.
	Evaluate()
	// WriteTable prints the figures for people.
	WriteTable(w io.Writer) error
}

// Main is the main function of a benchmark command named name: [Run] with the process's
// arguments and output, stopped by SIGINT or SIGTERM; it exits with Run's code.
func Main[C Config, R interface {
	comparable
	Result
}](name string, parse func(args []string, stderr io.Writer) (C, error), bench func(ctx context.Context, cfg C, logger *slog.Logger, stderr io.Writer) (R, error)) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Run(ctx, name, os.Args[1:], os.Stdout, os.Stderr, parse, bench)
	stop()
	os.Exit(code)
}

// Run parses args with parse (a bad command line returns 2), runs bench, and prints the result
// bench returns, also when it failed part way, as a table on stdout and, with --json-out, as
// JSON. It returns the exit code: 0, or 1 when bench failed.
func Run[C Config, R interface {
	comparable
	Result
}](ctx context.Context, name string, args []string, stdout, stderr io.Writer,
	parse func(args []string, stderr io.Writer) (C, error),
	bench func(ctx context.Context, cfg C, logger *slog.Logger, stderr io.Writer) (R, error),
) int {
	cfg, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: invalid command line:\n%v\n", name, err)
		return 2
	}
	flags := cfg.common()
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: flags.LogLevel}))
	res, err := bench(ctx, cfg, logger, stderr)
	var none R
	if res != none {
		res.Evaluate()
		if werr := res.WriteTable(stdout); werr != nil {
			err = errors.Join(err, werr)
		}
		if flags.JSONOut != "" {
			if werr := WriteJSON(flags.JSONOut, res); werr != nil {
				err = errors.Join(err, werr)
			} else {
				logger.Info("results written", "path", flags.JSONOut)
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}
