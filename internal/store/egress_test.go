package store

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/vault"
)

func TestEgressEditsAppendToTheFeedInOrder(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e testEngine) {
		ctx := context.Background()
		s, _ := e.open(t)
		now := time.UnixMilli(1_700_000_000_000).UTC()
		a, b := netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("2001:db8::7")
		got, err := s.EditEgress(ctx, func(cur []EgressIP) ([]EgressChange, error) {
			if len(cur) != 0 {
				t.Errorf("new store lists %v", cur)
			}
			return []EgressChange{
				{IP: a, Kind: EgressAdd, Source: EgressConfig, AnnouncedAt: now, EffectiveAt: now},
				{IP: b, Kind: EgressAdd, Source: EgressReported, OrgID: "org_x", Host: "runner-1", AnnouncedAt: now, EffectiveAt: now.Add(time.Hour)},
			}, nil
		})
		if err != nil || len(got) != 2 || got[0].Seq >= got[1].Seq || got[0].Seq < 1 {
			t.Fatalf("EditEgress = %+v, %v", got, err)
		}
		if _, err := s.EditEgress(ctx, func([]EgressIP) ([]EgressChange, error) {
			return []EgressChange{{IP: a, Kind: EgressRetire, Source: EgressConfig, AnnouncedAt: now.Add(time.Minute), EffectiveAt: now.Add(2 * time.Hour)}}, nil
		}); err != nil {
			t.Fatal(err)
		}
		// A failing plan changes nothing.
		boom := errors.New("boom")
		if _, err := s.EditEgress(ctx, func([]EgressIP) ([]EgressChange, error) { return nil, boom }); !errors.Is(err, boom) {
			t.Fatalf("failing plan: %v", err)
		}
		if _, err := s.EditEgress(ctx, func([]EgressIP) ([]EgressChange, error) {
			return []EgressChange{{IP: netip.MustParseAddr("192.0.2.1"), Kind: EgressRetire, AnnouncedAt: now, EffectiveAt: now}}, nil
		}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("retiring an unknown address: %v", err)
		}
		ips, err := s.EgressIPs(ctx)
		if err != nil || len(ips) != 2 {
			t.Fatalf("EgressIPs = %+v, %v", ips, err)
		}
		byIP := map[netip.Addr]EgressIP{}
		for _, e := range ips {
			byIP[e.IP] = e
		}
		if ea := byIP[a]; !ea.RemovedAt.Equal(now.Add(2*time.Hour)) || !ea.RetiredAt.Equal(now.Add(time.Minute)) || ea.Source != EgressConfig {
			t.Errorf("retired row = %+v", ea)
		}
		if eb := byIP[b]; eb.Host != "runner-1" || eb.OrgID != "org_x" || !eb.ActiveAt.Equal(now.Add(time.Hour)) || !eb.RetiredAt.IsZero() {
			t.Errorf("reported row = %+v", eb)
		}
		feed, err := s.EgressChanges(ctx, 0, 10)
		if err != nil || len(feed) != 3 {
			t.Fatalf("EgressChanges = %+v, %v", feed, err)
		}
		if feed[0].IP != a || feed[1].IP != b || feed[2].Kind != EgressRetire || feed[2].IP != a {
			t.Errorf("feed order = %+v", feed)
		}
		page, _ := s.EgressChanges(ctx, feed[0].Seq, 1)
		if len(page) != 1 || page[0].Seq != feed[1].Seq {
			t.Errorf("page after %d = %+v", feed[0].Seq, page)
		}
		if latest, _ := s.LatestEgressChange(ctx); latest != feed[2].Seq {
			t.Errorf("latest = %d, want %d", latest, feed[2].Seq)
		}
		// Re-adding a retired address clears its retirement.
		if _, err := s.EditEgress(ctx, func([]EgressIP) ([]EgressChange, error) {
			return []EgressChange{{IP: a, Kind: EgressAdd, Source: EgressConfig, AnnouncedAt: now.Add(3 * time.Minute), EffectiveAt: now}}, nil
		}); err != nil {
			t.Fatal(err)
		}
		ips, _ = s.EgressIPs(ctx)
		for _, e := range ips {
			if e.IP == a && (!e.RetiredAt.IsZero() || !e.RemovedAt.IsZero()) {
				t.Errorf("re-added row still retired: %+v", e)
			}
		}
	})
}

func TestEgressWebhookDeliveryState(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e testEngine) {
		ctx := context.Background()
		s, _ := e.open(t)
		org := mustOrg(t, s, "Acme")
		other := mustOrg(t, s, "Bravo")
		now := time.Now().UTC().Truncate(time.Millisecond)
		add := func(ip string) {
			t.Helper()
			if _, err := s.EditEgress(ctx, func([]EgressIP) ([]EgressChange, error) {
				return []EgressChange{{IP: netip.MustParseAddr(ip), Kind: EgressAdd, Source: EgressConfig, AnnouncedAt: now, EffectiveAt: now}}, nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		add("198.51.100.1")
		sealed := vault.Sealed{KeyID: "k1", Nonce: make([]byte, 12), Ciphertext: []byte("sealed")}
		w, err := s.PutEgressWebhook(ctx, org.ID, "https://hooks.example.com/a", sealed)
		if err != nil || w.DeliveredSeq != 1 {
			t.Fatalf("PutEgressWebhook = %+v, %v (a new webhook starts at the feed's end)", w, err)
		}
		if due, _ := s.DueEgressWebhooks(ctx, now.Add(time.Second)); len(due) != 0 {
			t.Errorf("up-to-date webhook is due: %+v", due)
		}
		add("198.51.100.2")
		due, err := s.DueEgressWebhooks(ctx, now.Add(time.Second))
		if err != nil || len(due) != 1 || due[0].ID != w.ID || due[0].Secret.KeyID != "k1" || string(due[0].Secret.Ciphertext) != "sealed" {
			t.Fatalf("due = %+v, %v", due, err)
		}
		retry := now.Add(time.Minute)
		if err := s.RecordEgressDelivery(ctx, org.ID, w.ID, EgressDelivery{At: now, DeliveredSeq: 1, Attempts: 1, NextAttemptAt: retry, Error: "the receiver answered 500"}); err != nil {
			t.Fatal(err)
		}
		if due, _ := s.DueEgressWebhooks(ctx, now.Add(time.Second)); len(due) != 0 {
			t.Errorf("webhook due before its retry time: %+v", due)
		}
		got, _ := s.GetEgressWebhook(ctx, org.ID)
		if got.Attempts != 1 || got.LastError != "the receiver answered 500" || !got.NextAttemptAt.Equal(retry) || got.LastAttemptAt.IsZero() {
			t.Errorf("after a failure: %+v", got)
		}
		// Another org cannot touch it.
		if err := s.RecordEgressDelivery(ctx, other.ID, w.ID, EgressDelivery{At: now, OK: true, DeliveredSeq: 2}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetEgressWebhook(ctx, other.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("other org's webhook: %v", err)
		}
		if err := s.RecordEgressDelivery(ctx, org.ID, w.ID, EgressDelivery{At: now, OK: true, DeliveredSeq: 2}); err != nil {
			t.Fatal(err)
		}
		got, _ = s.GetEgressWebhook(ctx, org.ID)
		if got.Attempts != 0 || got.LastError != "" || got.DeliveredSeq != 2 || got.LastSuccessAt.IsZero() {
			t.Errorf("after a success: %+v", got)
		}
		if err := s.DeleteEgressWebhook(ctx, org.ID); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteEgressWebhook(ctx, org.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("second delete: %v", err)
		}
	})
}
