package tributary

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tributary-dev/tributary/client-sdk/go/localserver"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// t0 is 2026-01-10T00:00:00Z: the server's scheduler clock stands still
// there (the test-only --test-schedule-clock-ms), so fire times are known.
var t0 = time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)

func TestSchedulesAreCreatedReadListedPausedResumedAndDeleted(t *testing.T) {
	server := startServer(t, localserver.Options{
		Args: []string{"--test-schedule-clock-ms", strconv.FormatInt(t0.UnixMilli(), 10)},
	})
	client := dialClient(t, server.URL())
	ctx := testContext(t)
	workflow := NewWorkflow("scheduled", Task{ID: "only", Run: noop})
	if _, err := client.RegisterWorkflow(ctx, workflow); err != nil {
		t.Fatal(err)
	}
	created, err := client.CreateSchedule(ctx, NewSchedule{
		ScheduleID:   "nightly",
		WorkflowName: "scheduled",
		Cron:         "30 2 * * *",
		TimeZone:     "Europe/Paris",
		Input:        map[string]string{"source": "nightly"},
		Overlap:      OverlapQueue,
		CatchUp:      CatchUpAll,
		MaxCatchUp:   3,
	})
	if err != nil {
		t.Fatal(err)
	}
	var input map[string]string
	if err := json.Unmarshal(created.Input, &input); err != nil || input["source"] != "nightly" {
		t.Fatalf("input %s: %v", created.Input, err)
	}
	// 02:30 in Paris is 01:30 UTC in winter.
	if created.Overlap != OverlapQueue || created.CatchUp != CatchUpAll || created.MaxCatchUp != 3 ||
		!created.NextFireTimes[0].Equal(t0.Add(90*time.Minute)) || created.LastRunID != "" {
		t.Fatalf("created %+v", created)
	}
	fetched, err := client.GetSchedule(ctx, "nightly", 2)
	if err != nil || len(fetched.NextFireTimes) != 2 {
		t.Fatalf("GetSchedule = %+v, %v", fetched, err)
	}
	listed, err := client.ListSchedules(ctx)
	if err != nil || len(listed) != 1 || listed[0].ScheduleID != "nightly" {
		t.Fatalf("ListSchedules = %+v, %v", listed, err)
	}
	paused, err := client.PauseSchedule(ctx, "nightly")
	if err != nil || !paused.Paused || len(paused.NextFireTimes) != 0 {
		t.Fatalf("PauseSchedule = %+v, %v", paused, err)
	}
	resumed, err := client.ResumeSchedule(ctx, "nightly")
	if err != nil || resumed.Paused {
		t.Fatalf("ResumeSchedule = %+v, %v", resumed, err)
	}
	if err := client.DeleteSchedule(ctx, "nightly"); err != nil {
		t.Fatal(err)
	}
	if _, err := client.GetSchedule(ctx, "nightly", 0); status.Code(err) != codes.NotFound {
		t.Fatalf("a deleted schedule: %v", err)
	}
	_, err = client.CreateSchedule(ctx, NewSchedule{ScheduleID: "bad", WorkflowName: "scheduled", Cron: "61 * * * *"})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "invalid cron expression") {
		t.Fatalf("a bad cron expression: %v", err)
	}
}
