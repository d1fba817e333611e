"""What the synthetic population is made of: code systems, the diagnosis catalogue with each code's
value-set categories, names, places, providers, payers and how each product appears on a Coverage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

# --------------------------------------------------------------------------------------------------
# Systems and constants

ICD = "http://hl7.org/fhir/sid/icd-10-cm"
SCT = "http://snomed.info/sct"
SOPT = "https://nahdo.org/sopt"
DUAL_EXT = "https://planfit.dev/fhir/StructureDefinition/dual-status-code"
HARP_EXT = "https://planfit.dev/fhir/StructureDefinition/ny-harp-status"
OPWDD_EXT = "https://planfit.dev/fhir/StructureDefinition/opwdd-participation"
MEMBER_SYSTEM = "https://planfit.dev/synth/member-id"
ID_SYSTEM = "https://planfit.dev/synth/"  # + resource kind
CLIN = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VER = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CAT = "http://terminology.hl7.org/CodeSystem/condition-category"
COV_CLASS = "http://terminology.hl7.org/CodeSystem/coverage-class"
REL = "http://terminology.hl7.org/CodeSystem/subscriber-relationship"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
NPI = "http://hl7.org/fhir/sid/us-npi"
CPT = "http://www.ama-assn.org/go/cpt"
SOURCE_CLINICAL = "urn:planfit:synth:ehr"
SOURCE_CLAIMS = "urn:planfit:synth:claims-feed"

PRIORITY = {"dsnp": 90, "csnp": 80, "ny-harp": 70, "ma": 50, "medicare-ffs": 40, "ny-mmc": 30, "commercial": 10}
MEDICARE_ELIGIBLE = ("ma", "medicare-ffs")
DUAL_ELIGIBLE = ("dsnp", "ma", "medicare-ffs")

# --------------------------------------------------------------------------------------------------
# Diagnosis catalogue: (ICD-10-CM code, SNOMED CT code or None, display, value-set categories, sex)


@dataclass(frozen=True)
class Dx:
    icd: str | None
    sct: str | None
    display: str
    sct_display: str | None
    cats: frozenset[str]
    sex: str | None = None  # "female" / "male" when the code is sex-specific

    @property
    def lifelong(self) -> bool:
        """In mappings/lifelong.json: schizophrenia, schizoaffective, bipolar, HIV, ESRD (SPEC §4.3)."""
        return (self.icd is not None and self.icd.startswith(LIFELONG_ICD)) or self.sct in LIFELONG_SCT


def _dx(icd: str | None, display: str, cats: Iterable[str] = (), sct: str | None = None,
        sct_display: str | None = None, sex: str | None = None) -> Dx:
    return Dx(icd, sct, display, sct_display or (display if sct else None), frozenset(cats), sex)


LIFELONG_ICD = ("F20", "F25", "F31", "B20", "Z21", "N18.6", "Z99.2")
LIFELONG_SCT = ("58214004", "13746004")
SMI_MH = ("smi", "csnp-mental-health")
SUD_CATS = ("sud", "csnp-substance-dependence")
DX: dict[str, tuple[Dx, ...]] = {
    # SMI that is also a C-SNP chronic and disabling mental-health condition
    "smi-mh": (
        _dx("F20.9", "Schizophrenia, unspecified", SMI_MH, "58214004", "Schizophrenia"),
        _dx("F25.0", "Schizoaffective disorder, bipolar type", SMI_MH),
        _dx("F31.9", "Bipolar disorder, unspecified", SMI_MH, "13746004", "Bipolar disorder"),
        _dx("F31.72", "Bipolar disorder, in full remission, most recent episode hypomanic", SMI_MH),
        _dx("F31.32", "Bipolar disorder, current episode depressed, moderate", SMI_MH),
        _dx("F33.2", "Major depressive disorder, recurrent severe without psychotic features", SMI_MH),
        _dx("F32.1", "Major depressive disorder, single episode, moderate", SMI_MH),
        _dx("F22", "Delusional disorders", SMI_MH),
        _dx(None, "Schizophrenia", SMI_MH, "58214004", "Schizophrenia"),
        _dx(None, "Bipolar disorder", SMI_MH, "13746004", "Bipolar disorder"),
    ),
    # SMI, but not one of the C-SNP mental-health conditions
    "smi-only": (
        _dx("F29", "Unspecified psychosis not due to a substance or known physiological condition", ("smi",),
            "69322001", "Psychotic disorder"),
    ),
    "sud": (
        _dx("F10.20", "Alcohol dependence, uncomplicated", SUD_CATS, "66590003", "Alcohol dependence"),
        _dx("F10.20", "Alcohol dependence, uncomplicated", SUD_CATS, "7200002", "Alcoholism"),
        _dx("F11.20", "Opioid dependence, uncomplicated", SUD_CATS),
        _dx("F11.21", "Opioid dependence, in remission", SUD_CATS),
        _dx("F10.11", "Alcohol abuse, in remission", SUD_CATS),
        _dx("F12.20", "Cannabis dependence, uncomplicated", SUD_CATS),
        _dx("F14.10", "Cocaine abuse, uncomplicated", SUD_CATS),
        _dx("F11.10", "Opioid abuse, uncomplicated", SUD_CATS, "5602001", "Opioid abuse"),
        _dx(None, "Alcoholism", SUD_CATS, "7200002", "Alcoholism"),
    ),
    # Depression that is a C-SNP mental-health condition but not SMI (mild / unspecified / remission MDD)
    "mdd-not-smi": (
        _dx("F32.9", "Major depressive disorder, single episode, unspecified", ("csnp-mental-health",),
            "370143000", "Major depressive disorder"),
        _dx("F33.9", "Major depressive disorder, recurrent, unspecified", ("csnp-mental-health",)),
        _dx("F32.0", "Major depressive disorder, single episode, mild", ("csnp-mental-health",)),
        _dx("F32.4", "Major depressive disorder, single episode, in partial remission", ("csnp-mental-health",)),
        _dx("F33.41", "Major depressive disorder, recurrent, in partial remission", ("csnp-mental-health",)),
    ),
    # Behavioral-health codes in no value set at all
    "bh-neutral": (
        _dx("F32.A", "Depression, unspecified", (), "35489007", "Depressive disorder"),
        _dx("F41.1", "Generalized anxiety disorder"),
        _dx("F43.10", "Post-traumatic stress disorder, unspecified", (), "47505003", "Posttraumatic stress disorder"),
        _dx("F17.210", "Nicotine dependence, cigarettes, uncomplicated"),
        _dx("F10.90", "Alcohol use, unspecified, uncomplicated"),
        _dx("F34.1", "Dysthymic disorder"),
        _dx(None, "Drug overdose", (), "55680006", "Drug overdose"),
    ),
    "neutral": (
        _dx("I10", "Essential (primary) hypertension", (), "38341003", "Hypertensive disorder"),
        _dx("E78.5", "Hyperlipidemia, unspecified", (), "55822004", "Hyperlipidemia"),
        _dx("J01.90", "Acute sinusitis, unspecified", (), "444814009", "Viral sinusitis"),
        _dx("J02.9", "Acute pharyngitis, unspecified", (), "195662009", "Acute viral pharyngitis"),
        _dx("R73.03", "Prediabetes", (), "15777000", "Prediabetes"),
        _dx("E66.9", "Obesity, unspecified", (), "162864005", "Body mass index 30+ - obesity"),
        _dx("K21.9", "Gastro-esophageal reflux disease without esophagitis"),
        _dx("M54.50", "Low back pain, unspecified"),
        _dx("G43.909", "Migraine, unspecified, not intractable, without status migrainosus"),
        _dx("D64.9", "Anemia, unspecified", (), "271737000", "Anemia"),
        _dx("M17.9", "Osteoarthritis of knee, unspecified", (), "239873007", "Osteoarthritis of knee"),
        _dx("N18.1", "Chronic kidney disease, stage 1", (), "431855005", "Chronic kidney disease stage 1"),
    ),
    "csnp-diabetes": (
        _dx("E11.9", "Type 2 diabetes mellitus without complications", ("csnp-diabetes",), "44054006",
            "Diabetes mellitus type 2"),
        _dx("E11.22", "Type 2 diabetes mellitus with diabetic chronic kidney disease", ("csnp-diabetes",),
            "127013003", "Diabetic renal disease"),
        _dx("E11.42", "Type 2 diabetes mellitus with diabetic polyneuropathy", ("csnp-diabetes",),
            "368581000119106", "Neuropathy due to type 2 diabetes mellitus"),
        _dx("E10.9", "Type 1 diabetes mellitus without complications", ("csnp-diabetes",)),
    ),
    "csnp-chf": (
        _dx("I50.9", "Heart failure, unspecified", ("csnp-chf",), "88805009", "Chronic congestive heart failure"),
        _dx("I50.22", "Chronic systolic (congestive) heart failure", ("csnp-chf",)),
        _dx("I11.0", "Hypertensive heart disease with heart failure", ("csnp-chf",)),
    ),
    "csnp-cardiovascular": (
        _dx("I48.91", "Unspecified atrial fibrillation", ("csnp-cardiovascular",), "49436004", "Atrial fibrillation"),
        _dx("I25.10", "Atherosclerotic heart disease of native coronary artery without angina pectoris",
            ("csnp-cardiovascular",), "53741008", "Coronary arteriosclerosis"),
        _dx("I73.9", "Peripheral vascular disease, unspecified", ("csnp-cardiovascular",)),
    ),
    "csnp-stroke": (
        _dx("I63.9", "Cerebral infarction, unspecified", ("csnp-stroke",), "230690007", "Cerebrovascular accident"),
        _dx("I69.351", "Hemiplegia and hemiparesis following cerebral infarction affecting right dominant side",
            ("csnp-stroke", "csnp-neurologic")),
    ),
    "csnp-dementia": (
        _dx("G30.9", "Alzheimer's disease, unspecified", ("csnp-dementia",), "26929004", "Alzheimer's disease"),
        _dx("G30.0", "Alzheimer's disease with early onset", ("csnp-dementia",), "230265002",
            "Familial Alzheimer's disease of early onset"),
        _dx("F03.90", "Unspecified dementia, unspecified severity, without behavioral disturbance, psychotic "
            "disturbance, mood disturbance, and anxiety", ("csnp-dementia",)),
    ),
    "csnp-lung": (
        _dx("J44.9", "Chronic obstructive pulmonary disease, unspecified", ("csnp-lung",), "185086009",
            "Chronic obstructive bronchitis"),
        _dx("J45.909", "Unspecified asthma, uncomplicated", ("csnp-lung",)),
        _dx("J43.9", "Emphysema, unspecified", ("csnp-lung",)),
    ),
    "csnp-neurologic": (
        _dx("G40.909", "Epilepsy, unspecified, not intractable, without status epilepticus", ("csnp-neurologic",),
            "84757009", "Epilepsy"),
        _dx(None, "Seizure disorder", ("csnp-neurologic",), "128613002", "Seizure disorder"),
        _dx("G20.A1", "Parkinson's disease without dyskinesia, without mention of fluctuations", ("csnp-neurologic",)),
        _dx("G82.20", "Paraplegia, unspecified", ("csnp-neurologic",), "698754002",
            "Chronic paralysis due to lesion of spinal cord"),
        _dx("G62.9", "Polyneuropathy, unspecified", ("csnp-neurologic",)),
    ),
    "csnp-autoimmune": (
        _dx("M06.9", "Rheumatoid arthritis, unspecified", ("csnp-autoimmune",), "69896004", "Rheumatoid arthritis"),
        _dx("M32.9", "Systemic lupus erythematosus, unspecified", ("csnp-autoimmune",)),
    ),
    "csnp-cancer": (
        _dx("C50.911", "Malignant neoplasm of unspecified site of right female breast", ("csnp-cancer",),
            sex="female"),
        _dx("C61", "Malignant neoplasm of prostate", ("csnp-cancer",), sex="male"),
        _dx("C34.90", "Malignant neoplasm of unspecified part of unspecified bronchus or lung", ("csnp-cancer",)),
        _dx("C18.9", "Malignant neoplasm of colon, unspecified", ("csnp-cancer",)),
    ),
    "csnp-liver": (
        _dx("K74.60", "Unspecified cirrhosis of liver", ("csnp-liver",)),
        _dx("K70.30", "Alcoholic cirrhosis of liver without ascites", ("csnp-liver",)),
        _dx("K72.10", "Chronic hepatic failure without coma", ("csnp-liver",)),
    ),
    "csnp-esrd": (
        _dx("N18.6", "End stage renal disease", ("csnp-esrd",)),
        _dx("Z99.2", "Dependence on renal dialysis", ("csnp-esrd",)),
    ),
    "csnp-hematologic": (
        _dx("D57.1", "Sickle-cell disease without crisis", ("csnp-hematologic",)),
        _dx("D69.3", "Immune thrombocytopenic purpura", ("csnp-hematologic",)),
        _dx("D46.9", "Myelodysplastic syndrome, unspecified", ("csnp-hematologic",)),
    ),
    "csnp-hiv-aids": (
        _dx("B20", "Human immunodeficiency virus [HIV] disease", ("csnp-hiv-aids",)),
        _dx("Z21", "Asymptomatic human immunodeficiency virus [HIV] infection status", ("csnp-hiv-aids",)),
    ),
}
CSNP_BODY_POOLS = tuple(k for k in DX if k.startswith("csnp-"))
# The shipped C-SNP plans (products.json `csnp.plans`, in order of preference): id, condition grouping, and
# the ZIPs of the plan's area (None: all of New York).
NYC_LUNG_ZIPS = ("10451", "11201", "11432")
PRODUCTS_WITH_PLANS = ("csnp",)  # products.json products with several plans: their enrolled plan may be unknown
CSNP_PLANS = (
    ("csnp-cardiometabolic", ("csnp-diabetes", "csnp-chf", "csnp-cardiovascular"), None),
    ("csnp-esrd", ("csnp-esrd",), None),
    ("csnp-behavioral-health", ("csnp-mental-health", "csnp-substance-dependence"), None),
    ("csnp-lung", ("csnp-lung",), NYC_LUNG_ZIPS),
)
# C-SNP condition pools with a plan approved for them, and those without one in the shipped catalogue.
CSNP_PLAN_POOLS = ("csnp-diabetes", "csnp-chf", "csnp-cardiovascular", "csnp-esrd", "csnp-lung")
CSNP_NO_PLAN_POOLS = tuple(k for k in CSNP_BODY_POOLS if k not in CSNP_PLAN_POOLS)
ROUTINE_CLAIM_DX = _dx("Z00.00", "Encounter for general adult medical examination without abnormal findings")

# --------------------------------------------------------------------------------------------------
# Synthetic names, places, providers

FEMALE = ("Ana", "Beatriz", "Carmen", "Dana", "Elena", "Fatima", "Grace", "Hana", "Iris", "Jasmine", "Keisha",
          "Lucia", "Maya", "Nadia", "Olivia", "Priya", "Rosa", "Sofia", "Tamara", "Valeria", "Wen", "Yara", "Zoe")
MALE = ("Aaron", "Bilal", "Carlos", "Darnell", "Eli", "Felix", "Gabriel", "Hector", "Ivan", "Jamal", "Kenji",
        "Luis", "Marcus", "Nikhil", "Omar", "Pedro", "Quentin", "Rafael", "Samuel", "Tomas", "Victor", "Wei", "Yusuf")
FAMILY = ("Abara", "Bergstrom", "Castillo", "Delacroix", "Eklund", "Fontaine", "Gallagher", "Haddad", "Ibarra",
          "Jablonski", "Kowalczyk", "Lindqvist", "Mbeki", "Nakamura", "Okafor", "Petrov", "Quintero", "Rasmussen",
          "Sandoval", "Takahashi", "Umarov", "Vasquez", "Whitfield", "Xiong", "Yilmaz", "Zielinski")
OUT_OF_STATE = ("Hoboken", "07030")  # New Jersey: outside the shipped NY coverage areas (products.json)
PLACES: tuple[tuple[str, str], ...] = (("Albany", "12207"), ("Buffalo", "14202"), ("Bronx", "10451"), ("Brooklyn", "11201"),
          ("Rochester", "14604"), ("Syracuse", "13202"), ("Yonkers", "10701"), ("Utica", "13501"),
          ("Queens", "11432"), ("Ithaca", "14850"))


def _npi(base9: str) -> str:
    """A valid NPI: 9 digits + Luhn check digit computed over the prefix 80840 (CMS NPI rule)."""
    total = 0
    for i, ch in enumerate(reversed("80840" + base9)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return base9 + str((10 - total % 10) % 10)


PROVIDERS = tuple((_npi(b), name) for b, name in (
    ("123456701", "Hudson Community Health Center (synthetic)"),
    ("134567802", "Mohawk Valley Behavioral Health (synthetic)"),
    ("145678903", "Finger Lakes Primary Care (synthetic)"),
    ("156789004", "Bronx Riverside Medical Group (synthetic)"),
    ("167890105", "Catskill Family Medicine (synthetic)"),
))
BH_PROVIDERS = (PROVIDERS[1],)
GENERAL_PROVIDERS = tuple(p for p in PROVIDERS if p not in BH_PROVIDERS)

PAYERS = {
    "ny-medicaid": "New York State Medicaid (synthetic)",
    "mco": "Empire Valley Health Plan (synthetic)",
    "cms": "Centers for Medicare & Medicaid Services",
    "ma-org": "Lakeshore Medicare Advantage (synthetic)",
    "commercial": "Northway Commercial Insurance (synthetic)",
}

# How each product appears on a Coverage: (plan class value or None, SOPT code or None, payer key)
COVERAGE_FORMS: dict[str, tuple[tuple[str | None, str | None, str], ...]] = {
    "ny-mmc": (("NY-MMC", "211", "mco"), ("MMC", "21", "mco"), ("ny-mmc", None, "mco"), (None, "211", "mco"),
               ("Mainstream", "213", "mco")),
    "ny-harp": (("NY-HARP", "211", "mco"), ("HARP", "21", "mco"), ("ny-harp", None, "mco"), ("harp", "219", "mco")),
    "dsnp": (("D-SNP", "14", "ma-org"), ("DSNP", "141", "ma-org"), ("dsnp", None, "ma-org"), (None, "141", "ma-org"),
             ("FIDE-SNP", "142", "ma-org")),
    "csnp": (("C-SNP", "1111", "ma-org"), ("csnp", "111", "ma-org"), (None, "1111", "ma-org"),
             ("HMO-CSNP", "112", "ma-org")),
    "ma": (("MA", "111", "ma-org"), ("MAPD", "112", "ma-org"), (None, "111", "ma-org"), (None, "112", "ma-org"),
           ("Medicare-Advantage", "113", "ma-org"), ("ma", None, "ma-org")),
    "medicare-ffs": ((None, "121", "cms"), ("ORIGINAL-MEDICARE", "121", "cms"), ("medicare-ffs", None, "cms"),
                     (None, "12", "cms")),
    "commercial": (("COMMERCIAL", "512", "commercial"), ("EMPLOYER-PPO", "512", "commercial"),
                   (None, "511", "commercial"), (None, "612", "commercial"), ("commercial", None, "commercial"),
                   ("EXCHANGE", "52", "commercial")),
}
MEDICAID_FFS_SOPT = ("22", "2", "29", "26")
FULL_CODES = ("02", "04", "08")
PARTIAL_CODES = ("01", "03", "05", "06")
