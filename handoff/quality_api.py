"""Score quality API (issue 14): a ruleset's quality against sales' verdicts, and the
backtest of a ruleset beside its model's published one, both point-in-time
(``handoff.quality``). Read by scoring admins and marketing (and staff)."""

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from handoff import quality
from handoff.permissions import CanReadQuality
from leadflow import query
from leadflow.representation import decimal_text, or_none
from scoring import selectors as scoring_selectors


# --- Output ---------------------------------------------------------------------------------------
def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def rate_data(rate: quality.Rate) -> dict[str, Any]:
    interval = rate.interval
    return {
        "successes": rate.successes,
        "total": rate.total,
        "rate": _round(rate.value),
        "low": _round(interval[0]) if interval else None,
        "high": _round(interval[1]) if interval else None,
    }


def lift_data(lift: quality.Lift) -> dict[str, Any]:
    interval = lift.interval
    return {
        "when_fired": rate_data(lift.fired),
        "when_not_fired": rate_data(lift.not_fired),
        "lift": _round(lift.value),
        "low": _round(interval[0]) if interval else None,
        "high": _round(interval[1]) if interval else None,
    }


def sales_confirmed_data(confirmed: quality.SalesConfirmed) -> dict[str, Any]:
    return {
        "name": confirmed.name,
        "accepted": confirmed.accepted,
        "answered": confirmed.answered,
        "items": [
            {
                "key": item.key,
                "label": item.label,
                "asked": item.asked,
                "confirmed": item.confirmed,
                "rate": _round(item.confirmed_rate),
            }
            for item in confirmed.items
        ],
    }


def quality_data(report: quality.QualityReport) -> dict[str, Any]:
    return {
        "ruleset_version": report.ruleset.version,
        "model": report.ruleset.model.slug,
        "status": report.ruleset.status,
        "handoffs": report.handoffs,
        "decided": report.decided,
        "undecided": report.undecided,
        "accepted": rate_data(report.accepted),
        "won": rate_data(report.won),
        "auc_accepted": _round(report.auc_accepted),
        "auc_won": _round(report.auc_won),
        "bands_set": report.bands_set,
        "bands": [
            {
                "low": or_none(decimal_text, band.low),
                "high": or_none(decimal_text, band.high),
                "name": band.label,
                "count": band.count,
                "accepted": band.accepted,
                "rejected": band.rejected,
                "undecided": band.undecided,
                "won": band.won,
                "won_known": band.won_known,
                "accept_rate": rate_data(band.accept),
                "win_rate": rate_data(band.win),
                "reject_reasons": {str(reason): count for reason, count in band.reject_reasons.items()},
            }
            for band in report.bands
        ],
        "min_count": report.min_count,
        "rules": [
            {
                "id": rule.id,
                "name": rule.name,
                "kind": rule.kind,
                "points": decimal_text(rule.points),
                "fired": rule.fired,
                "enough_data": rule.enough_data,
                "accept": lift_data(rule.accept),
                "win": lift_data(rule.win),
            }
            for rule in report.rules
        ],
        "confirmed": sales_confirmed_data(report.confirmed),
        "confirmed_by_band": [sales_confirmed_data(band) for band in report.confirmed_by_band],
    }


def backtest_side_data(side: quality.BacktestSide | None) -> dict[str, Any] | None:
    if side is None:
        return None
    return {
        "ruleset_version": side.ruleset.version,
        "status": side.ruleset.status,
        "auc_accepted": _round(side.auc_accepted),
        "sent": rate_data(side.sent),
        "sent_total": side.sent_total,
        "missed_accepted": side.missed_accepted,
        "spared_rejected": side.spared_rejected,
    }


def backtest_data(backtest: quality.Backtest) -> dict[str, Any]:
    return {
        "ruleset_version": backtest.draft.ruleset.version,
        "model": backtest.draft.ruleset.model.slug,
        "handoffs": backtest.handoffs,
        "decided": backtest.decided,
        "draft": backtest_side_data(backtest.draft),
        "published": backtest_side_data(backtest.published),
    }


class RateSerializer(serializers.Serializer):
    successes = serializers.IntegerField()
    total = serializers.IntegerField()
    rate = serializers.FloatField(allow_null=True, help_text="successes ÷ total; null when total is 0.")
    low = serializers.FloatField(allow_null=True, help_text="95 % Wilson interval, lower bound.")
    high = serializers.FloatField(allow_null=True, help_text="95 % Wilson interval, upper bound.")


class LiftSerializer(serializers.Serializer):
    when_fired = RateSerializer()
    when_not_fired = RateSerializer()
    lift = serializers.FloatField(allow_null=True, help_text="Rate when fired ÷ rate when not fired.")
    low = serializers.FloatField(allow_null=True, help_text="95 % interval (Katz, log risk ratio), lower bound.")
    high = serializers.FloatField(allow_null=True, help_text="95 % interval, upper bound.")


class QualityBandSerializer(serializers.Serializer):
    low = serializers.CharField(allow_null=True, help_text="Lowest score of the band; null: every score below high.")
    high = serializers.CharField(allow_null=True, help_text="Scores below it; null: no upper edge.")
    name = serializers.CharField(help_text="The band as the page shows it, e.g. 20.00–40.00.")
    count = serializers.IntegerField()
    accepted = serializers.IntegerField()
    rejected = serializers.IntegerField()
    undecided = serializers.IntegerField(help_text="Queued, claimed or closed by hand: not in the rates.")
    won = serializers.IntegerField()
    won_known = serializers.IntegerField(help_text="Handoffs whose result is known (won, lost or rejected).")
    accept_rate = RateSerializer(help_text="Accepted of the decided handoffs.")
    win_rate = RateSerializer(help_text="Won of the handoffs whose result is known.")
    reject_reasons = serializers.DictField(child=serializers.IntegerField())


class RuleQualitySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.CharField()
    points = serializers.CharField()
    fired = serializers.IntegerField(help_text="Decided handoffs where the rule matched, point-in-time.")
    enough_data = serializers.BooleanField(help_text="At least min_count decided handoffs fired and not fired.")
    accept = LiftSerializer()
    win = LiftSerializer()


class ConfirmedItemSerializer(serializers.Serializer):
    key = serializers.CharField(help_text="The accept checklist item's key, e.g. budget.")
    label = serializers.CharField(  # type: ignore[assignment]  # a field named "label", not Field.label
        help_text="The item as the checklist names it today."
    )
    asked = serializers.IntegerField(help_text="Accepted handoffs whose answered checklist had the item.")
    confirmed = serializers.IntegerField(help_text="Of those, the ones where sales confirmed it.")
    rate = serializers.FloatField(allow_null=True, help_text="confirmed ÷ asked; null when asked is 0.")


class SalesConfirmedSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="The band as the page shows it (as in bands), or All.")
    accepted = serializers.IntegerField(help_text="Accepted handoffs.")
    answered = serializers.IntegerField(
        help_text="Of those, accepted with the checklist answered (the others were accepted before it existed)."
    )
    items = ConfirmedItemSerializer(many=True, help_text="Each checklist item asked, in the checklist's order.")


class QualitySerializer(serializers.Serializer):
    ruleset_version = serializers.IntegerField()
    model = serializers.CharField()
    status = serializers.CharField()
    handoffs = serializers.IntegerField()
    decided = serializers.IntegerField()
    undecided = serializers.IntegerField()
    accepted = RateSerializer(help_text="Share of SQLs accepted, of the decided handoffs.")
    won = RateSerializer()
    auc_accepted = serializers.FloatField(allow_null=True, help_text="AUC of the score against accepted.")
    auc_won = serializers.FloatField(allow_null=True, help_text="AUC of the score against won (null: no wins yet).")
    bands_set = serializers.BooleanField(help_text="True: the bands asked for; false: the deciles.")
    bands = QualityBandSerializer(many=True)
    min_count = serializers.IntegerField()
    rules = RuleQualitySerializer(many=True)
    confirmed = SalesConfirmedSerializer(help_text="What sales confirmed on accepting, over every band.")
    confirmed_by_band = SalesConfirmedSerializer(many=True, help_text="What sales confirmed, per band (as in bands).")


class BacktestSideSerializer(serializers.Serializer):
    ruleset_version = serializers.IntegerField()
    status = serializers.CharField()
    auc_accepted = serializers.FloatField(allow_null=True)
    sent = RateSerializer(help_text="Accepted of the decided handoffs it would have sent (SQL criteria then).")
    sent_total = serializers.IntegerField(help_text="Handoffs it would have sent, decided or not.")
    missed_accepted = serializers.IntegerField(help_text="Accepted handoffs it would not have sent.")
    spared_rejected = serializers.IntegerField(help_text="Rejected handoffs it would not have sent.")


class BacktestSerializer(serializers.Serializer):
    ruleset_version = serializers.IntegerField()
    model = serializers.CharField()
    handoffs = serializers.IntegerField()
    decided = serializers.IntegerField()
    draft = BacktestSideSerializer(help_text="The ruleset asked for.")
    published = BacktestSideSerializer(allow_null=True, help_text="The model's published ruleset; null: none other.")


# --- Views ------------------------------------------------------------------------------------------
def bands_of_request(request: Request) -> list[Any] | None:
    text = query.query_value(request, "bands")
    if text is None:
        return None
    try:
        return quality.quality_bands_parse(text)
    except quality.BandsInvalid as error:
        raise serializers.ValidationError({"bands": [str(error)]}) from None


class RuleSetQualityView(APIView):
    permission_classes = [CanReadQuality]

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "bands",
                str,
                description="Lower edges of the score bands, increasing, comma-separated (e.g. 0,20,40,60,80); "
                "default: the deciles of the scores.",
            )
        ],
        responses=QualitySerializer,
        summary="Score quality of a ruleset: calibration, AUC, rules' lift, reject reasons, what sales confirmed, "
        "point-in-time",
    )
    def get(self, request: Request, version: int) -> Response:
        ruleset = get_object_or_404(scoring_selectors.ruleset_list(), version=version)
        report = quality.ruleset_quality(ruleset=ruleset, edges=bands_of_request(request))
        return Response(QualitySerializer(quality_data(report)).data)


class RuleSetBacktestView(APIView):
    permission_classes = [CanReadQuality]

    @extend_schema(
        responses=BacktestSerializer,
        summary="Backtest: the ruleset and its model's published one replayed over the model's handoffs",
    )
    def get(self, request: Request, version: int) -> Response:
        ruleset = get_object_or_404(scoring_selectors.ruleset_list(), version=version)
        backtest = quality.ruleset_backtest(
            ruleset=ruleset, published=scoring_selectors.published_ruleset(ruleset.model)
        )
        return Response(BacktestSerializer(backtest_data(backtest)).data)
