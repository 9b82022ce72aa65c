package yamlconf

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
)

// Error is one problem in a configuration file, or in a file it names
// (a host list), at a line: 0 when the problem is about the file as a
// whole. Every problem a Checker reports is an *Error; check for it with
// errors.As.
type Error struct {
	File string // the file, as given or resolved from the config
	Line int    // 1-based; 0 when not known
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// Problems collects the problems found in one or more files, to report
// them all at once. The zero value is ready to use.
type Problems struct {
	list  []*Error
	files []string // in the order first named
}

// Addf records a problem in file at line (0 for the file as a whole).
func (ps *Problems) Addf(file string, line int, format string, args ...any) {
	if !slices.Contains(ps.files, file) {
		ps.files = append(ps.files, file)
	}
	ps.list = append(ps.list, &Error{File: file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// Len returns the number of problems recorded.
func (ps *Problems) Len() int { return len(ps.list) }

// Err returns nil when no problem was recorded, else every problem as an
// *Error, joined with errors.Join: grouped by file (the files in the
// order they were first named), in line order within a file (see
// CompareLines).
func (ps *Problems) Err() error { return ps.sorted("") }

// sorted is Err, with the problems of first (when not "") before those
// of every other file.
func (ps *Problems) sorted(first string) error {
	if len(ps.list) == 0 {
		return nil
	}
	rank := func(file string) int {
		if file == first {
			return -1
		}
		return slices.Index(ps.files, file)
	}
	list := slices.Clone(ps.list)
	slices.SortStableFunc(list, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(rank(a.File), rank(b.File)), CompareLines(a.Line, b.Line))
	})
	errs := make([]error, len(list))
	for i, e := range list {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// CompareLines orders problems by line, for reports: ascending, those
// without a line (0, about the file as a whole) last. It returns a
// negative number, zero or a positive number, as cmp.Compare does.
func CompareLines(a, b int) int {
	if (a == 0) != (b == 0) {
		if a == 0 {
			return 1
		}
		return -1
	}
	return cmp.Compare(a, b)
}
