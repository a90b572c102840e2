"""Code systems and coded concepts the synthetic hospital documents with.

Kept in one table so the codes the generator emits can be compared at a glance with
the value sets in docs/INDICATORS.md: a pathway that drifts from the catalogue (a
typo in an ATC code, a wrong system URI) would silently stop exercising an
indicator, and that is the failure this module exists to make visible.

Chinese hospitals code diagnoses in ICD-10 国家临床版 and procedures in ICD-9-CM-3
国家临床版, whose codes extend the international ones with more digits
(``I21.000x001``, ``00.6600``); some interfaces still send the plain WHO code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

ICD10_CN: Final = "urn:oid:2.16.156.10011.2.3.3.11"
ICD10_WHO: Final = "http://hl7.org/fhir/sid/icd-10"
ICD9CM3_CN: Final = "urn:oid:2.16.156.10011.2.3.3.12"
ICD9CM_WHO: Final = "http://hl7.org/fhir/sid/icd-9-cm"
ATC: Final = "http://www.whocc.no/atc"
LOINC: Final = "http://loinc.org"
SNOMED: Final = "http://snomed.info/sct"
QC: Final = "https://qcpulse.org/fhir/CodeSystem/qc"
UCUM: Final = "http://unitsofmeasure.org"
ACT_CODE: Final = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
OBS_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION: Final = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
RISK_PROBABILITY: Final = "http://terminology.hl7.org/CodeSystem/risk-probability"
CONDITION_CLINICAL: Final = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION: Final = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/condition-category"
DIAGNOSTIC_SERVICE: Final = "http://terminology.hl7.org/CodeSystem/v2-0074"
COMMUNICATION_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/communication-category"
DISCHARGE_DISPOSITION: Final = "http://terminology.hl7.org/CodeSystem/discharge-disposition"
IDENTIFIER_TYPE: Final = "http://terminology.hl7.org/CodeSystem/v2-0203"
ORGANIZATION_TYPE: Final = "http://terminology.hl7.org/CodeSystem/organization-type"
AE_SERIOUSNESS: Final = "http://terminology.hl7.org/CodeSystem/adverse-event-seriousness"
AE_SEVERITY: Final = "http://terminology.hl7.org/CodeSystem/adverse-event-severity"
AE_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/adverse-event-category"
MED_ADMIN_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/medication-admin-category"
MED_REQUEST_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/medicationrequest-category"
ACT_PRIORITY: Final = "http://terminology.hl7.org/CodeSystem/v3-ActPriority"


def coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"system": system, "code": code}
    if display is not None:
        c["display"] = display
    return c


def concept(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    """A CodeableConcept with one coding; ``text`` repeats the display, as HIS exports do."""
    cc: dict[str, Any] = {"coding": [coding(system, code, display)]}
    if display is not None:
        cc["text"] = display
    return cc


@dataclass(frozen=True, slots=True)
class Dx:
    """A diagnosis: the 国临版 code, its Chinese name, and the WHO code it rolls up to."""

    cn: str
    name: str
    who: str


# -- diagnoses ---------------------------------------------------------------------

STEMI_DX: Final = (
    Dx("I21.000x001", "急性前壁ST段抬高型心肌梗死", "I21.0"),
    Dx("I21.000x002", "急性广泛前壁ST段抬高型心肌梗死", "I21.0"),
    Dx("I21.100x001", "急性下壁ST段抬高型心肌梗死", "I21.1"),
    Dx("I21.200x001", "急性侧壁ST段抬高型心肌梗死", "I21.2"),
    Dx("I21.300", "急性ST段抬高型心肌梗死", "I21.3"),
)
NSTEMI_DX: Final = Dx("I21.400", "急性非ST段抬高型心肌梗死", "I21.4")
MI_UNSPECIFIED_DX: Final = Dx("I21.900", "急性心肌梗死", "I21.9")
ISCHAEMIC_STROKE_DX: Final = (
    Dx("I63.900", "脑梗死", "I63.9"),
    Dx("I63.400", "脑栓塞引起的脑梗死", "I63.4"),
    Dx("I63.500x001", "大脑中动脉闭塞性脑梗死", "I63.5"),
)
HAEMORRHAGIC_STROKE_DX: Final = Dx("I61.900", "脑出血", "I61.9")
SEPTIC_SHOCK_DX: Final = Dx("R57.200", "感染性休克", "R57.2")
SEPSIS_DX: Final = Dx("A41.900", "脓毒症", "A41.9")
PSYCH_DX: Final = (
    Dx("F20.000", "偏执型精神分裂症", "F20.0"),
    Dx("F20.900", "精神分裂症", "F20.9"),
    Dx("F31.200", "双相情感障碍，目前为伴有精神病性症状的躁狂发作", "F31.2"),
    Dx("F32.200", "重度抑郁发作，不伴精神病性症状", "F32.2"),
    Dx("F33.100", "复发性抑郁障碍，目前为中度发作", "F33.1"),
)
# Outside F20–F39, so they must not enter PIT-2026-40.
PSYCH_OTHER_DX: Final = (
    Dx("F41.100", "广泛性焦虑障碍", "F41.1"),
    Dx("F43.100", "创伤后应激障碍", "F43.1"),
)
CARDIAC_ARREST_DX: Final = (
    Dx("I46.000", "心脏骤停复苏成功", "I46.0"),
    Dx("I46.100", "心源性猝死", "I46.1"),
    Dx("I46.900", "心脏骤停", "I46.9"),
)
#: What the patient came in with or arrested from: on the admission slip beside I46.
ARREST_CAUSE_DX: Final = (
    Dx("I21.900", "急性心肌梗死", "I21.9"),
    Dx("I49.001", "心室颤动", "I49.0"),
    Dx("I50.900", "心力衰竭", "I50.9"),
    Dx("T75.100", "淹溺", "T75.1"),
    Dx("R99.x00", "呼吸心跳停止", "R99"),
)
SCHIZOPHRENIA_DX: Final = (
    Dx("F20.000", "偏执型精神分裂症", "F20.0"),
    Dx("F20.100", "青春型精神分裂症", "F20.1"),
    Dx("F20.500", "残留型精神分裂症", "F20.5"),
    Dx("F20.900", "精神分裂症", "F20.9"),
)
PECTUS_DX: Final = (
    Dx("Q67.600", "漏斗胸", "Q67.6"),
    Dx("Q67.700", "鸡胸", "Q67.7"),
)
#: Why a chest-wall patient comes back: bar displacement, pneumothorax, wound infection,
#: pain; and a planned admission for something else.
PECTUS_READMISSION_DX: Final = (
    Dx("T84.000", "胸骨矫形板移位", "T84.0"),
    Dx("J93.900", "气胸", "J93.9"),
    Dx("T81.400", "手术后切口感染", "T81.4"),
    Dx("R07.300", "胸壁疼痛", "R07.3"),
)
PECTUS_ELECTIVE_DX: Final = Dx("Z09.000", "胸壁畸形术后复查", "Z09.0")
ESRD_DX: Final = (
    Dx("N18.500", "慢性肾脏病5期", "N18.5"),
    Dx("N18.000", "终末期肾病", "N18.0"),
)
RENAL_ANAEMIA_DX: Final = Dx("D63.800", "肾性贫血", "D63.8")
CARDIOLOGY_DX: Final = (
    Dx("I20.000", "不稳定型心绞痛", "I20.0"),
    Dx("I50.900", "心力衰竭", "I50.9"),
    Dx("I48.x00", "心房颤动", "I48"),
    NSTEMI_DX,
)
NEUROLOGY_DX: Final = (
    Dx("G40.900", "癫痫", "G40.9"),
    HAEMORRHAGIC_STROKE_DX,
    Dx("G45.900", "短暂性脑缺血发作", "G45.9"),
)
GENERAL_MEDICINE_DX: Final = (
    Dx("J18.900", "肺炎", "J18.9"),
    Dx("J44.100", "慢性阻塞性肺病伴有急性加重", "J44.1"),
    Dx("E11.900", "2型糖尿病", "E11.9"),
    Dx("N39.000", "泌尿道感染", "N39.0"),
    Dx("I10.x00", "原发性高血压", "I10"),
)
INFECTIOUS_GM_DX: Final = frozenset({"J18.900", "J44.100", "N39.000"})
ICU_DX: Final = (
    Dx("J96.000", "急性呼吸衰竭", "J96.0"),
    Dx("J80.x00", "急性呼吸窘迫综合征", "J80"),
    SEPSIS_DX,
)
ED_MINOR_DX: Final = (
    Dx("R10.400", "腹痛", "R10.4"),
    Dx("J06.900", "急性上呼吸道感染", "J06.9"),
    Dx("S61.000", "手指开放性伤口", "S61.0"),
    Dx("R50.900", "发热", "R50.9"),
    Dx("T78.400", "过敏反应", "T78.4"),
    Dx("S06.000", "脑震荡", "S06.0"),
)
AMB_DX: Final = (
    Dx("I10.x00", "原发性高血压", "I10"),
    Dx("E11.900", "2型糖尿病", "E11.9"),
    Dx("J06.900", "急性上呼吸道感染", "J06.9"),
    Dx("K29.700", "胃炎", "K29.7"),
)


@dataclass(frozen=True, slots=True)
class Operation:
    """A surgical operation: 国临版 ICD-9-CM-3 code, name, its diagnosis, 四级手术 or not."""

    code: str
    name: str
    dx: Dx
    level4: bool
    infected: bool  # dirty/contaminated: therapeutic antibiotics, not only prophylaxis
    min_age: int = 18


GENERAL_SURGERY_OPS: Final = (
    Operation(
        "51.2300", "腹腔镜胆囊切除术", Dx("K80.100", "胆囊结石伴胆囊炎", "K80.1"), False, True
    ),
    Operation("47.0100", "腹腔镜阑尾切除术", Dx("K35.800", "急性阑尾炎", "K35.8"), False, True, 8),
    Operation("53.0200", "腹股沟斜疝修补术", Dx("K40.900", "腹股沟疝", "K40.9"), False, False, 5),
    Operation(
        "43.7x00", "胃部分切除伴胃空肠吻合术", Dx("C16.900", "胃恶性肿瘤", "C16.9"), True, False
    ),
    Operation("45.7300", "右半结肠切除术", Dx("C18.000", "盲肠恶性肿瘤", "C18.0"), True, False),
    Operation("52.7x00", "胰十二指肠切除术", Dx("C25.000", "胰头恶性肿瘤", "C25.0"), True, False),
)
ORTHOPAEDIC_OPS: Final = (
    Operation("81.5100", "全髋关节置换术", Dx("S72.000", "股骨颈骨折", "S72.0"), True, False),
    Operation("81.5400", "全膝关节置换术", Dx("M17.900", "膝关节病", "M17.9"), True, False),
    Operation("81.0800", "腰椎后路椎间融合术", Dx("M51.200", "腰椎间盘突出", "M51.2"), True, False),
    Operation(
        "79.3500",
        "股骨骨折切开复位内固定术",
        Dx("S72.300", "股骨干骨折", "S72.3"),
        False,
        False,
        10,
    ),
    Operation("80.2600", "膝关节镜检查", Dx("S83.200", "半月板撕裂", "S83.2"), False, False, 14),
)
REOPERATION: Final = Operation(
    "54.1200", "剖腹探查术（再次手术）", Dx("T81.000", "手术后出血", "T81.0"), False, False
)

PCI_CODES: Final = (
    ("00.6600", "经皮冠状动脉腔内血管成形术[PTCA]"),
    ("36.0700", "药物洗脱冠状动脉支架置入术"),
    ("36.0600", "非药物洗脱冠状动脉支架置入术"),
)
CORONARY_ANGIOGRAPHY: Final = ("88.5500", "单根导管冠状动脉造影术")
CPR_CODES: Final = (
    ("99.6000", "心肺复苏"),
    ("99.6300", "闭合性胸心脏按压"),
)
DEFIBRILLATION: Final = ("99.6200", "心脏电除颤")
CHEST_WALL_REPAIR: Final = ("34.7400", "胸壁畸形矫正术（Nuss手术）")
HAEMODIALYSIS: Final = ("39.9500", "血液透析")
PERITONEAL_DIALYSIS: Final = ("54.9800", "腹膜透析")

# -- medications -------------------------------------------------------------------

ROUTE_IV: Final = ("47625008", "Intravenous route")
ROUTE_ORAL: Final = ("26643006", "Oral route")
ROUTE_SC: Final = ("34206005", "Subcutaneous route")


@dataclass(frozen=True, slots=True)
class Drug:
    atc: str
    name: str
    route: tuple[str, str]
    dose: float
    unit: str


ALTEPLASE: Final = Drug("B01AD02", "注射用阿替普酶", ROUTE_IV, 50.0, "mg")
TENECTEPLASE: Final = Drug("B01AD11", "注射用替奈普酶", ROUTE_IV, 16.0, "mg")
ASPIRIN: Final = Drug("B01AC06", "阿司匹林肠溶片", ROUTE_ORAL, 300.0, "mg")
TICAGRELOR: Final = Drug("B01AC24", "替格瑞洛片", ROUTE_ORAL, 180.0, "mg")
HEPARIN: Final = Drug("B01AB01", "肝素钠注射液", ROUTE_IV, 5000.0, "[iU]")
ENOXAPARIN: Final = Drug("B01AB05", "依诺肝素钠注射液", ROUTE_SC, 40.0, "mg")
RIVAROXABAN: Final = Drug("B01AF01", "利伐沙班片", ROUTE_ORAL, 10.0, "mg")
CEFTRIAXONE: Final = Drug("J01DD04", "注射用头孢曲松钠", ROUTE_IV, 2.0, "g")
PIPERACILLIN_TAZOBACTAM: Final = Drug("J01CR05", "注射用哌拉西林钠他唑巴坦钠", ROUTE_IV, 4.5, "g")
CEFAZOLIN: Final = Drug("J01DB04", "注射用头孢唑林钠", ROUTE_IV, 1.0, "g")
CEFUROXIME: Final = Drug("J01DC02", "注射用头孢呋辛钠", ROUTE_IV, 1.5, "g")
LEVOFLOXACIN: Final = Drug("J01MA12", "左氧氟沙星氯化钠注射液", ROUTE_IV, 0.5, "g")
MEROPENEM: Final = Drug("J01DH02", "注射用美罗培南", ROUTE_IV, 1.0, "g")
SALINE: Final = Drug("B05BB01", "0.9%氯化钠注射液", ROUTE_IV, 1000.0, "mL")
RINGER_LACTATE: Final = Drug("B05BB01", "乳酸钠林格注射液", ROUTE_IV, 500.0, "mL")
NOREPINEPHRINE: Final = Drug("C01CA24", "重酒石酸去甲肾上腺素注射液", ROUTE_IV, 8.0, "mg")
DOPAMINE: Final = Drug("C01CA04", "盐酸多巴胺注射液", ROUTE_IV, 200.0, "mg")
PANTOPRAZOLE: Final = Drug("A02BC02", "注射用泮托拉唑钠", ROUTE_IV, 40.0, "mg")
GLUCOSE_5: Final = Drug("B05BA03", "5%葡萄糖注射液", ROUTE_IV, 250.0, "mL")
INSULIN: Final = Drug("A10AB01", "胰岛素注射液", ROUTE_SC, 8.0, "[iU]")
PARACETAMOL: Final = Drug("N02BE01", "对乙酰氨基酚片", ROUTE_ORAL, 0.5, "g")
RISPERIDONE: Final = Drug("N05AX08", "利培酮片", ROUTE_ORAL, 2.0, "mg")
QUETIAPINE: Final = Drug("N05AH04", "富马酸喹硫平片", ROUTE_ORAL, 100.0, "mg")
ESCITALOPRAM: Final = Drug("N06AB10", "草酸艾司西酞普兰片", ROUTE_ORAL, 10.0, "mg")
LITHIUM: Final = Drug("N05AN01", "碳酸锂缓释片", ROUTE_ORAL, 300.0, "mg")
OLANZAPINE: Final = Drug("N05AH03", "奥氮平片", ROUTE_ORAL, 10.0, "mg")
ANTIPSYCHOTICS: Final = (RISPERIDONE, QUETIAPINE, OLANZAPINE)
EPOETIN: Final = Drug("B03XA01", "重组人促红素注射液", ROUTE_SC, 10000.0, "[iU]")
EPINEPHRINE: Final = Drug("C01CA24", "盐酸肾上腺素注射液", ROUTE_IV, 1.0, "mg")

THERAPEUTIC_ANTIBIOTICS: Final = (
    CEFTRIAXONE,
    PIPERACILLIN_TAZOBACTAM,
    LEVOFLOXACIN,
    CEFUROXIME,
    MEROPENEM,
)
ROUTINE_IV: Final = (SALINE, GLUCOSE_5, PANTOPRAZOLE)

# -- observations --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lab:
    loinc: str
    name: str
    unit: str
    low: float
    high: float
    decimals: int


LACTATE: Final = Lab("2524-7", "血乳酸", "mmol/L", 0.5, 2.0, 1)
LACTATE_BLOOD: Final = Lab("32693-4", "全血乳酸", "mmol/L", 0.5, 2.0, 1)
TROPONIN_I: Final = Lab("10839-9", "心肌肌钙蛋白I", "ng/mL", 0.0, 0.04, 3)
WBC: Final = Lab("6690-2", "白细胞计数", "10*9/L", 3.5, 9.5, 1)
CRP: Final = Lab("1988-5", "C反应蛋白", "mg/L", 0.0, 10.0, 1)
GLUCOSE: Final = Lab("14749-6", "血糖", "mmol/L", 3.9, 6.1, 1)
CREATININE: Final = Lab("14682-9", "肌酐", "umol/L", 57.0, 111.0, 0)
ADMISSION_LABS: Final = (WBC, CRP, GLUCOSE, CREATININE)
#: Haemoglobin, in g/L as Chinese laboratories report it (some LIS send g/dL or mmol/L).
HAEMOGLOBIN: Final = Lab("718-7", "血红蛋白", "g/L", 115.0, 150.0, 0)

ECG: Final = ("11524-6", "心电图")

BLOOD_CULTURE: Final = ("600-7", "血培养")
URINE_CULTURE: Final = ("630-4", "尿培养")
SPUTUM_CULTURE: Final = ("624-7", "痰培养")
OTHER_CULTURE: Final = ("6463-4", "细菌培养（其他标本）")
CULTURE_RESULTS: Final = (
    "无细菌生长",
    "大肠埃希菌",
    "肺炎克雷伯菌",
    "金黄色葡萄球菌",
    "铜绿假单胞菌",
    "鲍曼不动杆菌",
)


@dataclass(frozen=True, slots=True)
class Imaging:
    loinc: str
    name: str
    normal: str
    critical: tuple[str, ...]


CT_HEAD: Final = Imaging(
    "24725-4", "头颅CT平扫", "颅内未见明显异常", ("急性脑出血，中线移位", "硬膜下血肿伴脑疝")
)
CT_CHEST: Final = Imaging(
    "24627-2", "胸部CT", "两肺纹理增多", ("主动脉夹层（Stanford A型）", "肺动脉栓塞")
)
XR_CHEST: Final = Imaging(
    "36643-5", "胸部X线片", "心肺膈未见明显异常", ("大量气胸，纵隔移位", "张力性气胸")
)
CT_ABDOMEN: Final = Imaging(
    "41806-1", "腹部CT", "腹部未见明显异常", ("消化道穿孔，膈下游离气体", "腹腔大量积血")
)
IMAGING_STUDIES: Final = (CT_HEAD, CT_CHEST, XR_CHEST, CT_ABDOMEN)

# -- adverse events --------------------------------------------------------------------

ADVERSE_EVENTS: Final = (
    (SNOMED, "217082002", "跌倒", "unsafe-physical-environment"),
    (SNOMED, "399912005", "院内压力性损伤", "unsafe-physical-environment"),
    (None, None, "给药错误（剂量错误）", "wrong-dose"),
    (None, None, "非计划拔管", "medical-device-use-error"),
    (None, None, "输液外渗", "wrong-technique"),
)
