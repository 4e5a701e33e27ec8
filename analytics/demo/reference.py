"""Reference data of the demo bank: places, branches, products, value pools and the documented rates.

Nothing here depends on the seed: every run draws from the same tables and pools, so a seed
alone decides the rows (see :mod:`analytics.demo.generator`).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from faker.providers.person.zh_CN import Provider as _ZhPersonProvider

from analytics import schema, settings

# The thresholds the defects are measured against: the settings' defaults, not their current
# values, so the demo store is the same whatever a deployment configures.
FRESHNESS_MONTHS = int(settings.SETTINGS["FRESHNESS_MONTHS"].default)
RISK_ASSESSMENT_VALID_DAYS = int(settings.SETTINGS["RISK_ASSESSMENT_VALID_DAYS"].default)

DEFECT_RATES: dict[str, float] = {
    "missing_email": 0.05,
    "missing_phone": 0.02,
    "missing_address": 0.03,
    "missing_occupation": 0.04,
    "invalid_id_check_digit": 0.01,
    "bad_phone_format": 0.02,
    "duplicate_customer": 0.01,
    "stale_record": 0.08,
    "expired_id_document": 0.03,
    "risk_assessment_over_a_year_old": 0.10,
    "gender_mismatch_id": 0.005,
    "birth_date_mismatch_id": 0.005,
}

BEHAVIOUR_RATES: dict[str, float] = {
    "churn": 0.12,  # of customers; churn month in [3rd month of the window, as_of + 3 months]
    "churn_closed_share": 0.55,  # of churners whose churn month has passed; the rest go dormant
    "temporary_dip": 0.04,  # of non-churners: a 3-month dip that recovers
    "marketing_consent": 0.75,
    "suitability_mismatch": 0.02,  # of customers with an open R4/R5 holding: tolerance below it
    "insurance_lift_with_mortgage": 2.0,  # P(insurance | mortgage) / P(insurance | no mortgage), same tier
    # of customer rows (exact count, like a defect): a current risk assessment that expires 4-30 days
    # after as_of (yearly renewals spread over the year put about 30/365 = 8 % in any 30 days)
    "risk_assessment_due": 0.06,
}


def expected_defect_counts(customers: int) -> dict[str, int]:
    """The exact number of customer rows :func:`generate` gives each defect of :data:`DEFECT_RATES`.

    Parameters
    ----------
    customers : int
        Total customer rows (duplicates included).

    Returns
    -------
    dict
        ``round(rate * customers)`` per defect name.
    """
    return {name: int(round(rate * customers)) for name, rate in DEFECT_RATES.items()}


# ---------------------------------------------------------------------------------------------
# Reference tables
# ---------------------------------------------------------------------------------------------

# (province, city, district, GB/T 2260 code, relative size of the customer base there).
REGIONS: tuple[tuple[str, str, str, str, float], ...] = (
    ("北京市", "北京市", "东城区", "110101", 3.0),
    ("北京市", "北京市", "西城区", "110102", 3.0),
    ("北京市", "北京市", "朝阳区", "110105", 5.0),
    ("北京市", "北京市", "海淀区", "110108", 5.0),
    ("上海市", "上海市", "黄浦区", "310101", 3.0),
    ("上海市", "上海市", "徐汇区", "310104", 3.5),
    ("上海市", "上海市", "静安区", "310106", 3.0),
    ("上海市", "上海市", "浦东新区", "310115", 6.0),
    ("广东省", "广州市", "越秀区", "440104", 3.0),
    ("广东省", "广州市", "海珠区", "440105", 3.0),
    ("广东省", "广州市", "天河区", "440106", 4.0),
    ("广东省", "深圳市", "罗湖区", "440303", 3.0),
    ("广东省", "深圳市", "福田区", "440304", 4.0),
    ("广东省", "深圳市", "南山区", "440305", 4.0),
    ("浙江省", "杭州市", "上城区", "330102", 2.5),
    ("浙江省", "杭州市", "拱墅区", "330105", 2.0),
    ("浙江省", "杭州市", "西湖区", "330106", 3.0),
    ("浙江省", "杭州市", "滨江区", "330108", 2.0),
    ("江苏省", "南京市", "玄武区", "320102", 2.5),
    ("江苏省", "南京市", "建邺区", "320105", 2.0),
    ("江苏省", "南京市", "鼓楼区", "320106", 2.5),
    ("四川省", "成都市", "锦江区", "510104", 2.5),
    ("四川省", "成都市", "青羊区", "510105", 2.0),
    ("四川省", "成都市", "武侯区", "510107", 3.0),
    ("湖北省", "武汉市", "江汉区", "420103", 2.5),
    ("湖北省", "武汉市", "武昌区", "420106", 2.5),
    ("湖北省", "武汉市", "洪山区", "420111", 2.0),
    ("天津市", "天津市", "和平区", "120101", 2.0),
    ("天津市", "天津市", "南开区", "120104", 2.0),
    ("重庆市", "重庆市", "渝中区", "500103", 2.0),
    ("重庆市", "重庆市", "江北区", "500105", 2.0),
    ("江苏省", "苏州市", "吴中区", "320506", 1.5),
    ("江苏省", "苏州市", "姑苏区", "320508", 2.0),
    ("陕西省", "西安市", "碑林区", "610103", 1.5),
    ("陕西省", "西安市", "雁塔区", "610113", 2.0),
    ("湖南省", "长沙市", "芙蓉区", "430102", 1.5),
    ("湖南省", "长沙市", "岳麓区", "430104", 1.5),
    ("河南省", "郑州市", "二七区", "410103", 1.5),
    ("河南省", "郑州市", "金水区", "410105", 2.0),
    ("山东省", "济南市", "历下区", "370102", 1.5),
    ("山东省", "济南市", "市中区", "370103", 1.0),
    ("山东省", "青岛市", "市南区", "370202", 1.5),
    ("山东省", "青岛市", "崂山区", "370212", 1.0),
    ("福建省", "福州市", "鼓楼区", "350102", 1.5),
    ("福建省", "厦门市", "思明区", "350203", 1.5),
    ("安徽省", "合肥市", "蜀山区", "340104", 1.5),
    ("安徽省", "合肥市", "包河区", "340111", 1.0),
    ("江西省", "南昌市", "东湖区", "360102", 1.2),
    ("辽宁省", "沈阳市", "和平区", "210102", 1.2),
    ("辽宁省", "沈阳市", "沈河区", "210103", 1.0),
    ("辽宁省", "大连市", "中山区", "210202", 1.2),
    ("吉林省", "长春市", "朝阳区", "220104", 1.0),
    ("黑龙江省", "哈尔滨市", "南岗区", "230103", 1.0),
    ("河北省", "石家庄市", "长安区", "130102", 1.0),
    ("山西省", "太原市", "小店区", "140105", 1.0),
    ("广西壮族自治区", "南宁市", "青秀区", "450103", 1.0),
    ("云南省", "昆明市", "五华区", "530102", 1.0),
    ("贵州省", "贵阳市", "南明区", "520102", 0.8),
    ("浙江省", "宁波市", "海曙区", "330203", 1.0),
    ("浙江省", "宁波市", "鄞州区", "330212", 1.2),
    ("江苏省", "无锡市", "梁溪区", "320213", 1.0),
    ("广东省", "佛山市", "禅城区", "440604", 1.0),
    ("广东省", "佛山市", "南海区", "440605", 1.0),
    ("浙江省", "温州市", "鹿城区", "330302", 1.0),
    ("江苏省", "常州市", "天宁区", "320402", 0.8),
    ("广东省", "珠海市", "香洲区", "440402", 0.8),
    ("福建省", "泉州市", "鲤城区", "350502", 0.8),
    # No branch here: places of birth (ID region codes) and customers who moved away.
    ("内蒙古自治区", "呼和浩特市", "新城区", "150102", 0.5),
    ("海南省", "海口市", "美兰区", "460108", 0.5),
    ("甘肃省", "兰州市", "城关区", "620102", 0.5),
    ("宁夏回族自治区", "银川市", "兴庆区", "640104", 0.3),
    ("青海省", "西宁市", "城东区", "630102", 0.3),
    ("新疆维吾尔自治区", "乌鲁木齐市", "天山区", "650102", 0.5),
    ("西藏自治区", "拉萨市", "城关区", "540102", 0.2),
    ("浙江省", "绍兴市", "越城区", "330602", 0.6),
    ("山东省", "烟台市", "芝罘区", "370602", 0.6),
    ("河北省", "唐山市", "路北区", "130203", 0.6),
)

# Branch districts (region codes) and the relative size of each branch's customer base:
# three branches in each first-tier city, two in four large provincial capitals, one elsewhere.
BRANCHES: tuple[tuple[str, float], ...] = (
    ("110101", 1.6), ("110105", 1.8), ("110108", 1.8),
    ("310101", 1.6), ("310104", 1.6), ("310115", 2.0),
    ("440104", 1.4), ("440106", 1.6), ("440105", 1.3),
    ("440304", 1.6), ("440305", 1.6), ("440303", 1.3),
    ("330106", 1.3), ("330102", 1.2),
    ("320102", 1.2), ("320106", 1.2),
    ("510107", 1.2), ("510104", 1.1),
    ("420103", 1.2), ("420106", 1.1),
    ("120101", 1.0), ("500103", 1.0), ("320508", 1.0), ("610113", 1.0), ("430104", 0.9),
    ("410105", 0.9), ("370102", 0.9), ("370202", 0.9), ("350102", 0.8), ("350203", 0.9),
    ("340104", 0.8), ("360102", 0.7), ("210102", 0.7), ("210202", 0.7), ("220104", 0.6),
    ("230103", 0.6), ("130102", 0.6), ("140105", 0.6), ("450103", 0.6), ("530102", 0.6),
    ("520102", 0.5), ("330212", 0.8), ("320213", 0.7), ("440605", 0.7), ("330302", 0.7),
    ("320402", 0.6), ("440402", 0.6), ("350502", 0.6),
)

# (product_id, name, category, risk level, annual margin, balance side)
PRODUCTS: tuple[tuple[str, str, str, str, float, str], ...] = (
    ("P001", "活期储蓄账户", "demand_deposit", "R1", 0.015, "asset"),
    ("P002", "七天通知存款", "demand_deposit", "R1", 0.012, "asset"),
    ("P003", "三个月定期存款", "time_deposit", "R1", 0.009, "asset"),
    ("P004", "一年期定期存款", "time_deposit", "R1", 0.008, "asset"),
    ("P005", "三年期定期存款", "time_deposit", "R1", 0.007, "asset"),
    ("P006", "大额存单", "time_deposit", "R1", 0.006, "asset"),
    ("P007", "天天利现金管理理财", "wealth_management", "R2", 0.005, "asset"),
    ("P008", "稳享固收理财", "wealth_management", "R2", 0.006, "asset"),
    ("P009", "固收增强理财", "wealth_management", "R3", 0.007, "asset"),
    ("P010", "平衡配置理财", "wealth_management", "R3", 0.007, "asset"),
    ("P011", "纯债债券基金", "fund", "R3", 0.010, "asset"),
    ("P012", "平衡混合基金", "fund", "R3", 0.012, "asset"),
    ("P013", "偏股混合基金", "fund", "R4", 0.014, "asset"),
    ("P014", "沪深300指数基金", "fund", "R4", 0.010, "asset"),
    ("P015", "科技主题股票基金", "fund", "R5", 0.015, "asset"),
    ("P016", "全球精选QDII基金", "fund", "R5", 0.015, "asset"),
    ("P017", "终身寿险", "insurance", "R1", 0.020, "asset"),
    ("P018", "年金保险", "insurance", "R2", 0.018, "asset"),
    ("P019", "重大疾病保险", "insurance", "R1", 0.022, "asset"),
    ("P020", "分红型两全保险", "insurance", "R2", 0.020, "asset"),
    ("P021", "标准信用卡", "credit_card", "R1", 0.080, "liability"),
    ("P022", "白金信用卡", "credit_card", "R1", 0.080, "liability"),
    ("P023", "个人住房贷款", "mortgage", "R1", 0.012, "liability"),
    ("P024", "个人消费贷款", "consumer_loan", "R1", 0.040, "liability"),
    ("P025", "积存金", "precious_metal", "R3", 0.010, "asset"),
    ("P026", "金卡信用卡", "credit_card", "R1", 0.080, "liability"),
)
# The card tiers (products.tier_rank): 1 the entry tier; a higher rank is the better tier of the same
# category. Products without tiers are missing here (NULL in the store).
PRODUCT_TIERS = {"P021": 1, "P026": 2, "P022": 3}
# The demo's card upgrades: the probability, by value tier (mass .. private), that a holder of a
# classic or gold card upgrades it to the next tier at some day between the card's opening and the
# last day they could open products (the old card closes that day, the new one carries the balance).
CARD_UPGRADE_PROB = (0.04, 0.12, 0.18, 0.22)
PRODUCT_INDEX = {p[0]: i for i, p in enumerate(PRODUCTS)}
PRODUCT_RISK_LEVEL = np.array([int(p[3][1]) - 1 for p in PRODUCTS])  # R1 -> 0 .. R5 -> 4

DEBIT_CARD_BINS = np.array([622202, 621700, 623668], dtype=np.int64)  # 19-digit debit cards
CREDIT_CARD_BINS = np.array([436742, 625965, 628288], dtype=np.int64)  # 16-digit credit cards

MOBILE_PREFIXES = np.array(
    [130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 147, 150, 151, 152, 153, 155, 156, 157, 158,
     159, 166, 170, 173, 175, 176, 177, 178, 180, 181, 182, 183, 184, 185, 186, 187, 188, 189, 191,
     193, 195, 198, 199], dtype=np.int64)
EMAIL_DOMAINS = np.array(["163.com", "126.com", "sina.com", "gmail.com", "foxmail.com", "hotmail.com",
                          "139.com", "outlook.com", "sohu.com", "yeah.net"])
EMAIL_DOMAIN_SHARES = np.array([0.30, 0.14, 0.08, 0.08, 0.10, 0.07, 0.07, 0.07, 0.05, 0.04])

ONBOARDING_CHANNELS = np.array(["branch", "mobile_app", "online", "partner", "payroll"])
OCCUPATIONS = np.array(["employee", "professional", "civil_servant", "teacher", "healthcare",
                        "business_owner", "self_employed", "worker", "farmer", "freelancer",
                        "student", "retired"])
# Yearly income, CNY.
INCOME_BANDS = np.array(["lt_50k", "50k_100k", "100k_200k", "200k_500k", "500k_1m", "ge_1m"])
INCOME_CUTS = np.array([-0.772, 0.050, 0.739, 1.341, 1.881])
RISK_TOLERANCES = np.array(schema.RISK_TOLERANCES)
# Shares C1 10 %, C2 30 %, C3 35 %, C4 18 %, C5 7 % of a normal score with sd 1.11.
RISK_TOLERANCE_CUTS = np.array([-1.2816, -0.2533, 0.6745, 1.4758]) * 1.11
CREDIT_GRADES = np.array(schema.CREDIT_GRADES)  # AAA .. CCC
# Shares AAA 5 %, AA 12 %, A 25 %, BBB 28 %, BB 18 %, B 8 %, CCC 4 % (descending score).
CREDIT_GRADE_CUTS = np.array([1.645, 0.954, 0.202, -0.524, -1.175, -1.751])
VALUE_TIER_CUTS = np.array([50_000.0, 500_000.0, 6_000_000.0])  # mass | affluent | wealth | private

CONTACT_CHANNELS = np.array(["branch", "phone", "app", "online", "wechat"])
SERVICE_CATEGORIES = np.array(["account", "card", "transfer", "password_reset", "product_inquiry",
                               "statement", "address_change"])
MARKETING_CATEGORIES = np.array(["wealth_management", "fund", "insurance", "credit_card",
                                 "time_deposit", "consumer_loan"])
COMPLAINT_CATEGORIES = np.array(["fees", "service", "app", "wait_time", "product"])

_STREET_STEMS = ("人民", "解放", "中山", "建设", "和平", "长江", "黄河", "新华", "胜利", "文化", "青年",
                 "光明", "朝阳", "建国", "南京", "北京", "上海", "东风", "红旗", "延安", "复兴", "友谊",
                 "学府", "科技", "工业", "滨江", "湖滨", "金融", "世纪", "环城", "花园", "幸福", "民主",
                 "团结", "前进", "海港", "站前", "府前", "迎宾", "体育")
_STREET_DIRECTIONS = ("", "", "", "东", "西", "南", "北", "中")
_STREET_SUFFIXES = ("路", "路", "街", "大道", "大街")
_COMPOUND_STEMS = ("阳光", "锦绣", "翠苑", "金色", "碧水", "华府", "东方", "御景", "绿地", "万科", "保利",
                   "恒大", "世纪", "天元", "龙湖", "紫金", "书香", "海棠", "丽景", "和谐", "康乐", "融创")
_COMPOUND_SUFFIXES = ("花园", "小区", "家园", "苑", "公寓", "新村", "嘉园", "华庭")

_MALE_CHARS = ("伟强磊洋勇军杰涛超明刚平辉鹏华飞鑫波斌宇浩凯健俊帆帅旭宁龙林阳建国志文海峰亮成东博昊轩睿泽然"
               "远宏毅鸿振庆永德晨瑞锋荣胜彬豪航铭哲宸逸嘉骏坤伦翔晖坚诚力兵松山江川新正义兴良贵福生元全学"
               "祥才发武忠")
_FEMALE_CHARS = ("芳娜敏静丽艳娟霞燕玲丹萍红英梅琳雪慧婷倩颖洁琴云莉兰凤佳欣怡雨萱梦诗涵妍悦晶瑶璐蕾薇菲月"
                 "媛秀珍巧美淑惠珠翠雅芝玉桂娥爱春露瑾婉琪璇晴欢彤昕岚馨可语若依紫")
_NEUTRAL_CHARS = "子文思佳晓嘉明海春秋冬新天永家心俊静雨安宇乐晨小一可志建国"


# ---------------------------------------------------------------------------------------------
# Pools built once (no randomness depends on the seed: the pools are the same for every run)
# ---------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def name_and_address_pools() -> dict[str, np.ndarray]:
    """Surnames and given names with their popularity weights, street and compound names."""
    rng = np.random.default_rng(20_240_601)
    surnames = np.array(list(_ZhPersonProvider.last_names.keys()))
    surname_w = np.array(list(_ZhPersonProvider.last_names.values()), dtype=float)

    def given(faker_names: list[str], chars: str) -> tuple[np.ndarray, np.ndarray]:
        chars = "".join(dict.fromkeys(chars))  # unique, order kept
        first_pool = "".join(dict.fromkeys(chars + _NEUTRAL_CHARS))
        names = list(dict.fromkeys(faker_names))
        names += [c for c in chars if c not in names]
        seen = set(names)
        while len(names) < 5000:
            cand = first_pool[rng.integers(len(first_pool))] + chars[rng.integers(len(chars))]
            if cand[0] != cand[1] and cand not in seen:
                seen.add(cand)
                names.append(cand)
        # Zipf-like popularity: Faker's common names first, then single characters, then pairs.
        w = 1.0 / (np.arange(len(names)) + 20.0) ** 0.7
        return np.array(names), w / w.sum()

    male, male_p = given(list(_ZhPersonProvider.first_names_male), _MALE_CHARS)
    female, female_p = given(list(_ZhPersonProvider.first_names_female), _FEMALE_CHARS)
    streets = np.array([s + d + x for s in _STREET_STEMS for d in dict.fromkeys(_STREET_DIRECTIONS)
                        for x in dict.fromkeys(_STREET_SUFFIXES)])
    compounds = np.array([s + x for s in _COMPOUND_STEMS for x in _COMPOUND_SUFFIXES])
    return {
        "surnames": surnames, "surname_p": surname_w / surname_w.sum(),
        "male": male, "male_p": male_p, "female": female, "female_p": female_p,
        "streets": streets, "compounds": compounds,
    }
