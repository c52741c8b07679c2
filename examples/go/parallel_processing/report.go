package main

// What the example prints on stdout once the run is over, in the Rust
// example's format: the run's status (and every task's when not all
// succeeded), the per-category stats table, the tutorial's
// parallel-efficiency figure, and the measured wall-clock figures.

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tributary-dev/tributary/client-sdk/go/tributary"
)

// loadSleepMS is what generate_data sleeps before the partitions start.
const loadSleepMS = 500

type finished struct {
	version  string
	run      *tributary.Run
	elapsed  time.Duration
	attempts []attempt
}

// taskSpan is from the first attempt's start to the last one's end.
func (f finished) taskSpan() (time.Duration, bool) {
	if len(f.attempts) == 0 {
		return 0, false
	}
	first, last := f.attempts[0].started, f.attempts[0].finished
	for _, a := range f.attempts {
		if a.started.Before(first) {
			first = a.started
		}
		if a.finished.After(last) {
			last = a.finished
		}
	}
	return last.Sub(first), true
}

func render(f finished, sleeps bool) string {
	var out strings.Builder
	run := f.run
	allSucceeded := true
	for _, task := range run.Tasks {
		allSucceeded = allSucceeded && task.State == tributary.TaskSucceeded
	}
	if allSucceeded {
		fmt.Fprintf(&out, "Run %s of %s (version %s): %s\n", run.ID, run.WorkflowName, f.version, run.Status)
		fmt.Fprintf(&out, "All %d tasks succeeded.\n", len(run.Tasks))
	} else {
		out.WriteString(taskTable(run))
	}
	out.WriteString("\n")
	renderStats(&out, run)
	out.WriteString("\n")
	renderFigures(&out, f, sleeps)
	return out.String()
}

func stateName(task tributary.TaskRun) string {
	switch task.SkipReason {
	case tributary.SkipUpstreamFailed:
		return string(task.State) + " (upstream failed)"
	case tributary.SkipRuleNotMet:
		return string(task.State) + " (rule not met)"
	}
	return string(task.State)
}

func taskTable(run *tributary.Run) string {
	var out strings.Builder
	fmt.Fprintf(&out, "Run %s of %s: %s\n", run.ID, run.WorkflowName, run.Status)
	for _, task := range run.Tasks {
		line := fmt.Sprintf("  %-20s %-27s attempts: %d", task.TaskID, stateName(task), len(task.Attempts))
		if task.Error != "" {
			line += "  error: " + task.Error
		}
		out.WriteString(strings.TrimRight(line, " "))
		out.WriteString("\n")
	}
	return out.String()
}

func renderStats(out *strings.Builder, run *tributary.Run) {
	stats, err := tributary.RunValue[StatsByCategory](run, "final_stats")
	if err != nil {
		out.WriteString("The run's context has no final_stats.\n")
		return
	}
	names := make([]string, 0, len(stats))
	for name := range stats {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool { return naturalLess(names[i], names[j]) })
	row := func(name, products, stock, value string) {
		fmt.Fprintf(out, "%-14s %9s %12s %18s\n", name, products, stock, value)
	}
	row("Category", "Products", "Stock", "Value")
	var products, stock uint64
	var value float64
	for _, name := range names {
		s := stats[name]
		row(name, grouped(uint64(s.ProductCount)), grouped(uint64(s.TotalStock)), money(s.TotalValue))
		products += uint64(s.ProductCount)
		stock += uint64(s.TotalStock)
		value += s.TotalValue
	}
	row("All", grouped(products), grouped(stock), money(value))
}

func renderFigures(out *strings.Builder, f finished, sleeps bool) {
	var times []uint64
	for n := 1; n <= 3; n++ {
		if t, err := tributary.RunValue[uint64](f.run, fmt.Sprintf("processing_time_%d", n)); err == nil {
			times = append(times, t)
		}
	}
	efficiency, effErr := tributary.RunValue[float64](f.run, "parallel_efficiency_percent")
	var slowest uint64
	if len(times) == 3 && effErr == nil {
		var sum uint64
		parts := make([]string, len(times))
		for index, t := range times {
			parts[index] = strconv.FormatUint(t, 10)
			sum += t
			slowest = max(slowest, t)
		}
		fmt.Fprintf(out, "Parallel efficiency (the tutorial's figure, from its simulated times): %s = %d ms of processing, the longest %d ms: %.1f%%\n",
			strings.Join(parts, " + "), sum, slowest, efficiency)
		if !sleeps {
			out.WriteString("  (--no-sleep: those times were drawn, not slept)\n")
		}
	} else {
		out.WriteString("Parallel efficiency: n/a, the partitions did not all finish\n")
	}

	if work, span, ok := partitionOverlap(f.attempts); ok && span > 0 {
		fmt.Fprintf(out, "Measured parallel efficiency (worker clock): the partitions ran %s ms of processing in %s ms of wall clock: %.1f%%\n",
			milliseconds(work), milliseconds(span), work.Seconds()/span.Seconds()*100)
	} else {
		out.WriteString("Measured parallel efficiency: n/a\n")
	}

	fmt.Fprintf(out, "Wall time: %s ms from StartRun until the run was seen finished", milliseconds(f.elapsed))
	span, hasSpan := f.taskSpan()
	if hasSpan {
		fmt.Fprintf(out, ", %s ms from the first task's start to the last one's end", milliseconds(span))
	}
	out.WriteString("\n")
	if sleeps && slowest > 0 && hasSpan {
		floor := loadSleepMS + slowest
		rest := max(span-time.Duration(floor)*time.Millisecond, 0)
		fmt.Fprintf(out, "  the sleeps alone take %d ms + the slowest partition's %d ms = %d ms; the rest, %s ms, is Tributary and the tasks' own work\n",
			loadSleepMS, slowest, floor, milliseconds(rest))
	}
}

// partitionOverlap is the partitions' summed durations and the span from
// the first start to the last end, on the worker's clock; ok only when all
// three succeeded here.
func partitionOverlap(attempts []attempt) (work, span time.Duration, ok bool) {
	var first, last time.Time
	for index, taskID := range PartitionTasks {
		var found *attempt
		for i := len(attempts) - 1; i >= 0; i-- {
			if attempts[i].taskID == taskID && attempts[i].succeeded {
				found = &attempts[i]
				break
			}
		}
		if found == nil {
			return 0, 0, false
		}
		if index == 0 || found.started.Before(first) {
			first = found.started
		}
		if index == 0 || found.finished.After(last) {
			last = found.finished
		}
		work += found.finished.Sub(found.started)
	}
	return work, last.Sub(first), true
}

func milliseconds(duration time.Duration) string {
	return fmt.Sprintf("%.1f", duration.Seconds()*1000)
}

// naturalLess sorts "Category 2" before "Category 10".
func naturalLess(a, b string) bool {
	stemA, numberA := splitNumber(a)
	stemB, numberB := splitNumber(b)
	if stemA != stemB {
		return stemA < stemB
	}
	return numberA < numberB
}

func splitNumber(name string) (string, uint64) {
	stem := strings.TrimRight(name, "0123456789")
	number, _ := strconv.ParseUint(name[len(stem):], 10, 64)
	return stem, number
}

// grouped writes 1234567 as 1,234,567.
func grouped(value uint64) string {
	digits := strconv.FormatUint(value, 10)
	var out strings.Builder
	for index, digit := range digits {
		if index > 0 && (len(digits)-index)%3 == 0 {
			out.WriteByte(',')
		}
		out.WriteRune(digit)
	}
	return out.String()
}

// money writes 1234567.891 as 1,234,567.89.
func money(value float64) string {
	cents := math.Round(value * 100)
	sign := ""
	if cents < 0 {
		sign = "-"
	}
	whole := uint64(math.Abs(cents))
	return fmt.Sprintf("%s%s.%02d", sign, grouped(whole/100), whole%100)
}
