package main

import (
	"sort"
	"testing"
)

func TestNumbersAreGroupedByThousands(t *testing.T) {
	for value, want := range map[uint64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567"} {
		if got := grouped(value); got != want {
			t.Errorf("grouped(%d) = %s, want %s", value, got, want)
		}
	}
	for value, want := range map[float64]string{1234567.891: "1,234,567.89", 0.5: "0.50", -12: "-12.00"} {
		if got := money(value); got != want {
			t.Errorf("money(%v) = %s, want %s", value, got, want)
		}
	}
}

func TestCategoriesSortByTheirNumber(t *testing.T) {
	names := []string{"Category 10", "Category 2", "Category 1", "Other"}
	sort.Slice(names, func(i, j int) bool { return naturalLess(names[i], names[j]) })
	want := []string{"Category 1", "Category 2", "Category 10", "Other"}
	for index := range want {
		if names[index] != want[index] {
			t.Fatalf("sorted = %v", names)
		}
	}
}

func TestTheWorkflowIsTheTutorials(t *testing.T) {
	workflow := Workflow()
	if err := workflow.Validate(); err != nil {
		t.Fatal(err)
	}
	definition := workflow.Definition()
	if len(definition.Tasks) != 9 || definition.Description != Description {
		t.Fatalf("definition = %+v", definition)
	}
	cleanupTask, _ := workflow.Task("cleanup")
	if cleanupTask.TriggerRule != "all_done" || len(cleanupTask.Dependencies) != 2 {
		t.Fatalf("cleanup = %+v", cleanupTask)
	}
}
