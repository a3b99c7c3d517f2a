package harness

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Target is one goal of a benchmark and whether a run met it.
type Target struct {
	Name string `json:"name"`
	Goal string `json:"goal"`
	// Measured says whether the phases the figure needs ran; Value is the figure.
	Measured bool    `json:"measured"`
	Value    float64 `json:"value"`
	Met      bool    `json:"met"`
	// Note, when set, replaces the verdict: why a measured figure does not count.
	Note string `json:"note,omitempty"`
}

// Verdict is the result column of the target: "met", "NOT MET", "not measured", or the note.
func (t Target) Verdict() string {
	switch {
	case !t.Measured:
		return "not measured"
	case t.Note != "":
		return t.Note
	case t.Met:
		return "met"
	default:
		return "NOT MET"
	}
}

// FindTarget returns the target named name, or an unmeasured one.
func FindTarget(targets []Target, name string) Target {
	for _, t := range targets {
		if t.Name == name {
			return t
		}
	}
	return Target{Name: name}
}

// Table is the figures of a run for people: one row per figure with its target and the
// verdict, columns aligned.
type Table struct {
	b  strings.Builder
	tw *tabwriter.Writer
}

// NewTable starts a table with the column headings.
func NewTable() *Table {
	t := &Table{}
	t.tw = tabwriter.NewWriter(&t.b, 0, 0, 3, ' ', 0)
	fmt.Fprintln(t.tw, "figure\tmeasured\ttarget\tresult")
	fmt.Fprintln(t.tw, "------\t--------\t------\t------")
	return t
}

// Row adds a figure without a target.
func (t *Table) Row(name, measured string) {
	fmt.Fprintf(t.tw, "%s\t%s\t\t\n", name, measured)
}

// TargetRow adds a figure with its target's goal and verdict.
func (t *Table) TargetRow(name, measured string, target Target) {
	fmt.Fprintf(t.tw, "%s\t%s\t%s\t%s\n", name, measured, target.Goal, target.Verdict())
}

// WriteTo writes the table to w.
func (t *Table) WriteTo(w io.Writer) (int64, error) {
	if err := t.tw.Flush(); err != nil {
		return 0, err
	}
	n, err := io.WriteString(w, t.b.String())
	return int64(n), err
}

// GroupInt formats n with thousands separators.
func GroupInt(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Millis is d in milliseconds.
func Millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
