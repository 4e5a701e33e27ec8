"""The one table format: each column by its declared kind, hand-computed cases in both languages."""

import datetime as dt

import pandas as pd
import pytest

from analytics import table_formats as tf


def frame():
    return pd.DataFrame({
        "run": [7, 7],
        "customer_id": ["C1", "C2"],
        "category": ["consumer_loan", "password_reset"],   # a product, then a contact category
        "value_tier": ["wealth", None],
        "id_type": ["resident_id", "passport"],
        "balance": [120584.6814, 677.6711],
        "propensity": [0.123456, 1.0],
        "lift": [4.530855, 0.5],
        "customers": [1234.0, 5.0],
        "opened_on": ["2019-01-01", "2023-07-02"],
        "score": [0.33333, 2.0],                          # no declared kind: two decimals
        "outcome": ["called back", None],                 # free text, not yet written for the second
        "remark": [None, None],                            # free text written for none yet
    })


def test_english_display_copy():
    shown = tf.display_frame(frame(), "en")
    assert "run" not in shown.columns
    assert shown["customer_id"].tolist() == ["C1", "C2"]
    assert shown["category"].tolist() == ["consumer loan", "Password reset"]  # the charts' words
    assert shown["value_tier"].tolist() == ["Wealth", "—"]
    assert shown["id_type"].tolist() == ["Resident ID card", "Passport"]
    assert shown["balance"].tolist() == [120584.68, 677.67]
    assert shown["propensity"].tolist() == [12.3, 100.0]
    assert shown["lift"].tolist() == [4.53, 0.5]
    assert shown["customers"].tolist() == [1234, 5]
    assert shown["opened_on"].tolist() == [dt.date(2019, 1, 1), dt.date(2023, 7, 2)]
    assert shown["score"].tolist() == [0.33, 2.0]
    assert shown["outcome"].tolist() == ["called back", "—"]  # not Streamlit's grey "None"
    assert shown["remark"].tolist() == ["—", "—"]


def test_chinese_display_copy_counts_money_in_wan():
    shown = tf.display_frame(frame(), "zh")
    assert shown["balance"].tolist() == ["¥12.06万", "¥677.67"]
    assert shown["category"].tolist() == ["消费贷款", "密码重置"]
    assert shown["value_tier"].tolist()[0] == "财富客户"


def test_the_frame_given_is_not_changed():
    raw = frame()
    tf.display_frame(raw, "zh")
    assert raw["balance"].tolist() == [120584.6814, 677.6711] and "run" in raw.columns


def test_column_formats_by_kind():
    formats = tf.column_formats(tf.display_frame(frame(), "en"), "en")
    assert formats["balance"] == ("number", "CNY %,.2f")
    assert formats["propensity"] == ("number", "%.1f%%")
    assert formats["customers"] == ("number", "%,d")
    assert formats["opened_on"] == ("date", "YYYY-MM-DD")
    assert "customer_id" not in formats and "category" not in formats
    assert "balance" not in tf.column_formats(tf.display_frame(frame(), "zh"), "zh")  # text in 万


def test_a_profile_lists_fields_and_values_in_words():
    profile = pd.DataFrame({"field": ["gender", "id_type", "onboarding_channel", "birth_date"],
                            "value": ["F", "resident_id", "mobile_app", "1949-**-**"]})
    shown = tf.display_frame(profile, "zh")
    assert shown["field"].tolist() == ["性别", "证件类型", "获客渠道", "出生日期"]
    assert shown["value"].tolist() == ["女", "居民身份证", "手机银行", "1949-**-**"]


def test_a_masked_date_is_left_as_it_is():
    shown = tf.display_frame(pd.DataFrame({"birth_date": ["1949-**-**", None]}), "en")
    assert shown["birth_date"].tolist()[0] == "1949-**-**"


def test_bad_language_is_refused():
    with pytest.raises(ValueError):
        tf.display_frame(frame(), "fr")


def test_an_export_says_stored_reason_codes_in_words_and_keeps_numbers_raw():
    from analytics.churn.reasons import encode

    frame = pd.DataFrame({"customer_id": ["C1", "C2"], "churn_probability": [0.4123, 0.1],
                          "reason_1": [encode("no_transactions", months=6), None]})
    en = tf.export_frame(frame, "en")
    zh = tf.export_frame(frame, "zh")
    assert en["churn_probability"].tolist() == [0.4123, 0.1]  # a file keeps its numbers
    assert en.loc[0, "reason_1"] != frame.loc[0, "reason_1"] and "no_transactions" not in en.loc[0, "reason_1"]
    assert en.loc[0, "reason_1"] != zh.loc[0, "reason_1"] and pd.isna(en.loc[1, "reason_1"])
    assert frame.loc[0, "reason_1"] == encode("no_transactions", months=6)  # the frame given is not changed
    plain = pd.DataFrame({"aum": [1.0]})
    assert tf.export_frame(plain, "en") is plain


def test_a_missing_date_or_time_reads_as_the_em_dash():
    shown = tf.display_frame(pd.DataFrame({"opened_on": ["2019-01-01", None],
                                           "last_login": [pd.Timestamp("2026-12-01 08:30:15.25"), None],
                                           "email": ["a@example.com", None]}), "en")
    assert shown["opened_on"].tolist() == ["2019-01-01", "—"]
    assert shown["last_login"].tolist() == ["2026-12-01 08:30:15", "—"]  # not Streamlit's grey "None"
    assert shown["email"].tolist() == ["a@example.com", "—"]
    formats = tf.column_formats(shown, "en")
    assert "opened_on" not in formats and "last_login" not in formats  # text now, drawn as text
    complete = tf.display_frame(pd.DataFrame({"last_login": [pd.Timestamp("2026-12-01 08:30:15.25")]}), "en")
    assert complete["last_login"].tolist() == [pd.Timestamp("2026-12-01 08:30:15")]
    assert tf.column_formats(complete, "en")["last_login"] == ("datetime", "YYYY-MM-DD HH:mm:ss")


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_audit_event_has_a_name_in_both_languages(lang):
    from analytics import audit, i18n

    names = [tf.enum_label("event", e, lang) for e in audit.EVENTS]
    assert all(name != event for name, event in zip(names, audit.EVENTS, strict=True))
    assert len(set(names)) == len(names)  # two events never read the same
    assert tf.enum_label("event", "login_failed", "en") == "Login failed"
    assert i18n.label("audit_event", "export", "zh") == "导出"


def test_formats_of_a_frame_with_timezone_aware_and_plain_datetime_columns():
    shown = tf.display_frame(pd.DataFrame({"contacted_at": pd.to_datetime(["2026-01-02 10:00:00", "2026-01-03 00:00:00"]),
                                           "created_at": pd.to_datetime(["2026-01-02"]).tz_localize("UTC").repeat(2)}),
                             "en")
    formats = tf.column_formats(shown, "en")
    assert formats["contacted_at"] == formats["created_at"] == ("datetime", "YYYY-MM-DD HH:mm:ss")


def test_formats_of_an_empty_frame_with_datetime_columns():
    # A customer without contacts: an empty datetime column (its map is empty datetime64, not bool).
    empty = pd.DataFrame({"contacted_at": pd.Series([], dtype="datetime64[ns]"), "kind": pd.Series([], dtype=object)})
    shown = tf.display_frame(empty, "en")
    assert tf.column_formats(shown, "en")["contacted_at"] == ("datetime", "YYYY-MM-DD HH:mm:ss")


def test_an_approval_requests_kind_reads_in_words():
    shown = tf.display_frame(pd.DataFrame({"request_id": [1, 2], "kind": ["unmask", "export"]}), "en")
    assert shown["kind"].tolist() == ["Unmask a field", "Large export"]
    assert tf.display_frame(pd.DataFrame({"kind": ["unmask"]}), "zh")["kind"].tolist() == ["查看明文"]
