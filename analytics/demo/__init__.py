"""Demo data generator: a realistic Chinese retail bank's customer store, deterministic for a seed.

:func:`generate` drops and recreates the store tables (``branches``, ``products``,
``customers``, ``holdings``, ``customer_monthly``, ``contacts``, ``consents``) and fills them. The app's own
tables (refresh runs, users, audit log, ...) are left alone.

What it makes
-------------
* **48 branches** in 36 real cities (GB/T 2260 district codes), named city + district + 支行.
* **25 products** in nine categories with risk levels R1-R5 and yearly margins.
* **Customers**: Chinese names (surname weights from Faker's zh_CN tables), valid 18-digit
  resident IDs (region, birth date, sex digit and GB 11643 check character all consistent with
  the record), unique mobile numbers, e-mails, addresses, a relationship manager code per
  branch (``RM0101``: codes, not names, so no staff personal data), income band, occupation,
  onboarding channel, risk tolerance C1-C5 (skewed to C2/C3, rising with wealth, falling with
  age), credit grade, status and marketing consent (about 75 %). Every customer holds a
  resident ID (``id_type = 'resident_id'``): it keeps the ID rules of the data-quality checks
  simple. Real IDs issued after 46 are valid for life; here every ID has a 10-year (under 30)
  or 20-year validity so that the expiry is always a real date.
* **Holdings** consistent with value tier (mass customers mostly deposits and a card, affluent
  and wealth customers wealth-management products, funds and insurance), never above the
  customer's risk tolerance except for the suitability mismatches below, with a cross-sell
  affinity (a mortgage doubles the chance of insurance within a value tier; mortgage holders
  are also wealthier, so P(insurance | mortgage) is about 2.5 times P(insurance)). Card
  numbers are 16 (credit) or 19 (debit) digits with real-looking BINs and a valid Luhn digit;
  open asset balances add up to the last month's AUM and open liability balances to its loan
  balance.
* **Monthly activity** for ``months`` months ending with the month of ``as_of``, from the
  month the customer opened: long-tailed AUM (lognormal: most customers under 50k CNY, a few
  at 6M and over), growth, quarter-end and Spring-Festival seasonality, deposits, loans,
  transactions and digital logins.
* **Churn**: 12 % of customers churn in a month spread over the window and up to three months
  after ``as_of``. In the 3-6 months before it their balances fall, logins and transactions
  fall faster and complaints rise. Afterwards the customer is ``closed`` (55 %: every balance
  0, every holding closed on the churn date, one ``account_closure`` service contact; their
  monthly rows go on, all zero) or ``dormant`` (no customer-initiated activity, a small deposit
  left, other holdings closed). A churner's loans are repaid or moved to another bank at the
  churn date.
  Customers whose churn month is after ``as_of`` are still ``active`` but already declining:
  the early warning should find them. A further 4 % of customers have a temporary dip that
  recovers (false alarms for a churn model).
* **Contacts**: service, marketing (only to consenting customers) and complaint contacts with
  channel, category and whether resolved; complaints are far more frequent in a churner's
  decline window and less often resolved.

Deliberate defects
------------------
Data-quality defects are injected at the exact counts ``round(rate * customers)``
(:func:`expected_defect_counts`), measured over all customer rows, so a data-quality report on
the demo store should find exactly these rates:

=================================  =====  ==============================================================
defect                              rate   what is wrong
=================================  =====  ==============================================================
missing_email                       5 %    ``email`` is NULL
missing_phone                       2 %    ``phone`` is NULL
missing_address                     3 %    ``address`` is NULL
missing_occupation                  4 %    ``occupation`` is NULL
invalid_id_check_digit              1 %    only the last character of ``id_number`` is changed
bad_phone_format                    2 %    10 or 12 digits, prefix 10/11/12, a letter O, or a landline
duplicate_customer                  1 %    an extra row (new ``customer_id``) repeating another row's
                                           name, gender, birth date, phone and ``id_number``
stale_record                        8 %    ``updated_at`` over FRESHNESS_MONTHS (24) months before as_of
expired_id_document                 3 %    ``id_expiry_date`` before as_of
risk_assessment_over_a_year_old     10 %   ``risk_assessed_at`` over 365 days before as_of
gender_mismatch_id                  0.5 %  ``gender`` disagrees with the sex digit of a valid ID
birth_date_mismatch_id              0.5 %  ``birth_date`` is shifted by days or a year from a valid ID's
=================================  =====  ==============================================================

How the sets relate: ``customers`` is the total number of customer rows, duplicates included
(``--customers 20000`` gives 20,000 rows, and every rate has that one denominator). NULLs are
real NULLs, never empty strings. The ID defects (invalid check digit, gender mismatch, birth
date mismatch) are disjoint; the two phone defects are disjoint; neither touches a duplicate
row or the row it copies, so ``rows - distinct id_number`` is exactly the duplicate count and
the cross-field mismatches are measured on valid IDs only. A stale record is also an expired
risk assessment (the record was last touched before the assessment could have been renewed):
the 10 % of old assessments contain the 8 % of stale records. Stale records are never closed
or dormant customers (a closure updates the record). Dates keep a margin of at least 30 days
from each threshold, so a rule that counts 24 months as 730 days finds the same rows; the one
exception is the assessments due soon below, 3 days or more from the one-year threshold.

Assessments due soon: ``round(0.06 * customers)`` active customers (``BEHAVIOUR_RATES
["risk_assessment_due"]``) have a current risk assessment that expires 4 to 30 days after as_of
(assessed 336-362 days before it), so the risk page's "assessment due within 30 days" list has
rows. The other current assessments are at most 335 days old.

Behaviour rates (not defects) are in :data:`BEHAVIOUR_RATES`; the suitability mismatch rate is
over customers with an open R4/R5 holding (its count is rounded per chunk of 50,000 customers).

Determinism and scale
---------------------
Customers are made in chunks of a fixed :data:`CHUNK_CUSTOMERS`, each with its own random
stream ``SeedSequence([seed, 1, chunk])``, so a seed gives the same rows whatever the machine,
the time of day or the write batch size. Everything is vectorised with numpy; Faker is used
only for its name tables, never per row. Each chunk is written in one transaction with
:func:`analytics.store.bulk_insert`, on one :func:`analytics.store.bulk_load` connection (on
SQLite: the tables' secondary indexes made once, after the last chunk). The default ``as_of`` is
a fixed date (2026-10-31) so that a rebuild next month gives the same store.
"""

from analytics.demo.generator import CHUNK_CUSTOMERS, DEFAULT_AS_OF, STORE_TABLE_NAMES, generate
from analytics.demo.reference import (
    BEHAVIOUR_RATES,
    DEFECT_RATES,
    FRESHNESS_MONTHS,
    PRODUCTS,
    RISK_ASSESSMENT_VALID_DAYS,
    expected_defect_counts,
)

__all__ = [
    "BEHAVIOUR_RATES", "CHUNK_CUSTOMERS", "DEFAULT_AS_OF", "DEFECT_RATES", "FRESHNESS_MONTHS", "PRODUCTS",
    "RISK_ASSESSMENT_VALID_DAYS", "STORE_TABLE_NAMES", "expected_defect_counts", "generate",
]
