"""Generate tests/data/context_corpus.jsonl and fit the token estimates of brace.context.

Deterministic (seeded RNG, texts written here or taken from Python's own standard
library), no downloads.  Each line is ``{"id", "kind", "text"}`` or ``{"id", "kind",
"body"}`` (a chat body), plus ``"ref"``: the token counts of the reference tokenizers
that were available offline when the file was made::

    o200k, cl100k   tiktoken encodings (rank files from the bpe-openai package)
    qwen            Qwen's tiktoken-format vocabulary (dashscope's qwen.tiktoken)
    tekken          Mistral's tekken_240911 (mistral-common)
    claude          the legacy public Claude tokenizer (anthropic<0.39's tokenizer.json)

For a body, ``ref.o200k`` is OpenAI's cookbook count (messages + tools) with o200k.

Usage (in an environment that has the reference tokenizers; see docs/context.md)::

    python tests/data/make_context_corpus.py --qwen PATH/qwen.tiktoken \
        --claude PATH/tokenizer.json            # writes the corpus
    python tests/data/make_context_corpus.py --fit   # prints coefficients (for coefficients.json) and errors
"""

from __future__ import annotations

import argparse
import base64
import inspect
import json
import random
import string
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
OUT = HERE / "context_corpus.jsonl"

PROSE: dict[str, list[str]] = {
    "en": [
        "The committee met on Tuesday to review the proposal, but no decision was reached.",
        "She had always wondered why the river ran faster in spring than in late autumn.",
        "Please make sure that every request carries a deadline, otherwise retries can pile up.",
        "In 1969, two astronauts walked on the Moon while millions watched on television.",
        "The quick brown fox jumps over the lazy dog, and the dog doesn't seem to mind.",
        "Our quarterly revenue grew by twelve percent, driven mostly by enterprise customers.",
        "If the gateway cannot reach the upstream, it falls back to the next model group.",
        "Photosynthesis converts light energy into chemical energy stored in glucose.",
        "He paused, looked out of the window, and said nothing for a very long time.",
        "Customers who bought this item also purchased a protective case and a charger.",
        "Neural networks are trained by adjusting weights to minimise a loss function.",
        "The museum's new wing, designed by an award-winning architect, opens next month.",
    ],
    "fr": [
        "Le comité s'est réuni mardi pour examiner la proposition, sans parvenir à une décision.",
        "Elle s'était toujours demandé pourquoi la rivière coulait plus vite au printemps.",
        "Veuillez vérifier que chaque requête porte une échéance, sinon les tentatives s'accumulent.",
        "Les élèves ont présenté leurs travaux devant un jury très exigeant.",
        "À la fin de l'été, les vignerons commencent les vendanges dans toute la région.",
        "Cette bibliothèque réunit plus de deux millions d'ouvrages anciens et modernes.",
        "Il a regardé par la fenêtre et n'a rien dit pendant très longtemps.",
        "Le gouvernement a annoncé de nouvelles mesures pour soutenir les petites entreprises.",
    ],
    "de": [
        "Der Ausschuss trat am Dienstag zusammen, um den Vorschlag zu prüfen, ohne Ergebnis.",
        "Sie hatte sich immer gefragt, warum der Fluss im Frühling schneller fließt als im Herbst.",
        "Bitte stellen Sie sicher, dass jede Anfrage eine Frist enthält.",
        "Die Straßenbahn fährt werktags alle zehn Minuten vom Hauptbahnhof ab.",
        "Donaudampfschifffahrtsgesellschaftskapitän ist ein berühmtes langes deutsches Wort.",
        "Die Ergebnisse der Untersuchung werden nächste Woche veröffentlicht.",
        "Er schaute aus dem Fenster und sagte sehr lange nichts.",
        "Übermäßiger Zuckerkonsum erhöht das Risiko für zahlreiche Krankheiten.",
    ],
    "es": [
        "El comité se reunió el martes para revisar la propuesta, pero no se tomó ninguna decisión.",
        "Ella siempre se había preguntado por qué el río corría más rápido en primavera.",
        "Por favor, asegúrese de que cada solicitud tenga un plazo.",
        "La economía del país creció un tres por ciento el año pasado, según el banco central.",
        "Miró por la ventana y no dijo nada durante mucho tiempo.",
        "Los niños jugaban en la plaza mientras sus padres conversaban en el café.",
        "¿Cuántos años tenías cuando aprendiste a nadar en el mar?",
    ],
    "pt": [
        "O comitê se reuniu na terça-feira para analisar a proposta, sem chegar a uma decisão.",
        "Ela sempre se perguntou por que o rio corria mais rápido na primavera.",
        "As crianças brincavam na praça enquanto os pais conversavam no café.",
        "A população da cidade aumentou significativamente nas últimas duas décadas.",
        "Não há nada mais importante do que a saúde e a educação das pessoas.",
    ],
    "it": [
        "Il comitato si è riunito martedì per esaminare la proposta, senza prendere decisioni.",
        "Si era sempre chiesta perché il fiume scorresse più veloce in primavera.",
        "La città è famosa per i suoi musei, le sue chiese e la sua cucina tradizionale.",
        "Guardò fuori dalla finestra e non disse nulla per molto tempo.",
        "Perché non andiamo al mare questo fine settimana, se il tempo è bello?",
    ],
    "nl": [
        "De commissie kwam dinsdag bijeen om het voorstel te bespreken, zonder besluit.",
        "Ze had zich altijd afgevraagd waarom de rivier in de lente sneller stroomde.",
        "De fietsenstalling bij het station is helaas weer helemaal vol.",
    ],
    "pl": [
        "Komisja zebrała się we wtorek, aby rozpatrzyć wniosek, ale nie podjęła decyzji.",
        "Zawsze zastanawiała się, dlaczego rzeka płynie szybciej wiosną niż jesienią.",
        "Wyjrzał przez okno i przez bardzo długi czas nic nie mówił.",
        "Źródła podają, że zamek zbudowano w czternastym wieku.",
    ],
    "tr": [
        "Komite teklifi incelemek için salı günü toplandı, ancak karar alınmadı.",
        "Nehrin ilkbaharda neden sonbahardan daha hızlı aktığını hep merak etmişti.",
        "Pencereden dışarı baktı ve çok uzun süre hiçbir şey söylemedi.",
        "Çocuklar meydanda oynarken aileleri kahvede sohbet ediyordu.",
    ],
    "vi": [
        "Ủy ban đã họp vào thứ Ba để xem xét đề xuất, nhưng chưa có quyết định nào.",
        "Cô luôn tự hỏi tại sao con sông chảy nhanh hơn vào mùa xuân.",
        "Anh nhìn ra cửa sổ và không nói gì trong một thời gian rất dài.",
        "Thành phố nổi tiếng với ẩm thực đường phố và những con hẻm nhỏ.",
    ],
    "ru": [
        "Комитет собрался во вторник, чтобы рассмотреть предложение, но решение не было принято.",
        "Она всегда задавалась вопросом, почему весной река течёт быстрее, чем осенью.",
        "Пожалуйста, убедитесь, что у каждого запроса есть крайний срок.",
        "Он посмотрел в окно и очень долго ничего не говорил.",
        "Москва является крупнейшим городом страны и её политическим центром.",
        "Научные сотрудники опубликовали результаты исследования в престижном журнале.",
    ],
    "uk": [
        "Комітет зібрався у вівторок, щоб розглянути пропозицію, але рішення не ухвалили.",
        "Вона завжди думала, чому навесні річка тече швидше, ніж восени.",
        "Діти гралися на майдані, поки батьки розмовляли в кав'ярні.",
    ],
    "el": [
        "Η επιτροπή συνεδρίασε την Τρίτη για να εξετάσει την πρόταση, χωρίς απόφαση.",
        "Πάντα αναρωτιόταν γιατί το ποτάμι κυλούσε πιο γρήγορα την άνοιξη.",
        "Κοίταξε έξω από το παράθυρο και δεν είπε τίποτα για πολύ καιρό.",
    ],
    "ar": [
        "اجتمعت اللجنة يوم الثلاثاء لمراجعة الاقتراح، لكن لم يتم اتخاذ أي قرار.",
        "لطالما تساءلت لماذا يجري النهر أسرع في الربيع منه في الخريف.",
        "نظر من النافذة ولم يقل شيئًا لفترة طويلة جدًا.",
        "تشتهر المدينة بأسواقها القديمة ومساجدها التاريخية.",
    ],
    "he": [
        "הוועדה התכנסה ביום שלישי כדי לבחון את ההצעה, אך לא התקבלה החלטה.",
        "היא תמיד תהתה מדוע הנהר זורם מהר יותר באביב מאשר בסתיו.",
        "הוא הביט מבעד לחלון ולא אמר דבר במשך זמן רב מאוד.",
    ],
    "hi": [
        "समिति ने प्रस्ताव की समीक्षा के लिए मंगलवार को बैठक की, लेकिन कोई निर्णय नहीं लिया गया।",
        "वह हमेशा सोचती थी कि नदी वसंत में पतझड़ की तुलना में तेज़ क्यों बहती है।",
        "उसने खिड़की से बाहर देखा और बहुत देर तक कुछ नहीं कहा।",
        "भारत की राजधानी नई दिल्ली है और यह एक बहुत बड़ा शहर है।",
    ],
    "th": [
        "คณะกรรมการประชุมกันเมื่อวันอังคารเพื่อพิจารณาข้อเสนอ แต่ยังไม่มีการตัดสินใจ",
        "เธอสงสัยมาตลอดว่าทำไมแม่น้ำจึงไหลเร็วขึ้นในฤดูใบไม้ผลิ",
        "เขามองออกไปนอกหน้าต่างและไม่พูดอะไรเลยเป็นเวลานาน",
    ],
    "zh": [
        "委员会于星期二开会审议该提案，但没有作出任何决定。",
        "她一直想知道为什么河水在春天比在秋天流得更快。",
        "请确保每个请求都有截止时间，否则重试可能会堆积起来。",
        "他望着窗外，很长一段时间什么也没说。",
        "北京是中国的首都，也是一座历史悠久的城市。",
        "神经网络通过调整权重来最小化损失函数进行训练。",
        "我们的季度收入增长了百分之十二，主要来自企业客户。",
    ],
    "ja": [
        "委員会は火曜日に会合を開き、提案を検討したが、結論は出なかった。",
        "彼女は、なぜ川が秋よりも春のほうが速く流れるのか、ずっと不思議に思っていた。",
        "すべてのリクエストに期限を設定してください。そうしないと再試行が積み重なります。",
        "彼は窓の外を見つめ、長い間何も言わなかった。",
        "東京は日本の首都であり、世界有数の大都市です。",
        "カタカナで書かれたコンピューターやインターネットという言葉はよく使われます。",
    ],
    "ko": [
        "위원회는 화요일에 모여 제안을 검토했지만 아무런 결정도 내리지 못했다.",
        "그녀는 왜 강물이 가을보다 봄에 더 빨리 흐르는지 늘 궁금했다.",
        "그는 창밖을 바라보며 아주 오랫동안 아무 말도 하지 않았다.",
        "서울은 대한민국의 수도이며 인구가 매우 많은 도시이다.",
    ],
}

CODE_SNIPPETS = [
    """function debounce(fn, wait) {\n  let timer = null;\n  return (...args) => {\n    clearTimeout(timer);\n    timer = setTimeout(() => fn.apply(this, args), wait);\n  };\n}\n""",
    """package main\n\nimport (\n\t"fmt"\n\t"net/http"\n)\n\nfunc handler(w http.ResponseWriter, r *http.Request) {\n\tfmt.Fprintf(w, "Hello, %s!", r.URL.Path[1:])\n}\n\nfunc main() {\n\thttp.HandleFunc("/", handler)\n\thttp.ListenAndServe(":8080", nil)\n}\n""",
    """SELECT u.id, u.email, COUNT(o.id) AS orders, SUM(o.total_cents) / 100.0 AS revenue\nFROM users u\nLEFT JOIN orders o ON o.user_id = u.id AND o.created_at >= NOW() - INTERVAL '30 days'\nWHERE u.deleted_at IS NULL\nGROUP BY u.id, u.email\nHAVING COUNT(o.id) > 3\nORDER BY revenue DESC\nLIMIT 50;\n""",
    """fn main() {\n    let mut v: Vec<u64> = (1..=20).collect();\n    v.retain(|x| x % 3 != 0);\n    let total: u64 = v.iter().map(|x| x * x).sum();\n    println!("sum of squares = {}", total);\n}\n""",
    """<!DOCTYPE html>\n<html lang="en">\n<head>\n  <meta charset="utf-8">\n  <title>Status</title>\n  <link rel="stylesheet" href="/static/style.css">\n</head>\n<body>\n  <div class="card" id="status">\n    <h1>All systems operational</h1>\n    <p>Last checked: <time datetime="2024-05-01T12:00:00Z">today</time></p>\n  </div>\n</body>\n</html>\n""",
    """#!/usr/bin/env bash\nset -euo pipefail\nfor f in "$@"; do\n  if [[ -f "$f" ]]; then\n    sha256sum "$f" | awk '{print $1}' > "$f.sha256"\n  else\n    echo "skip: $f" >&2\n  fi\ndone\n""",
    """public class Counter {\n    private final AtomicLong value = new AtomicLong();\n\n    public long increment() {\n        return value.incrementAndGet();\n    }\n\n    @Override\n    public String toString() {\n        return "Counter{value=" + value.get() + "}";\n    }\n}\n""",
    """#include <stdio.h>\n#include <stdlib.h>\n\nint main(int argc, char **argv) {\n    if (argc < 2) {\n        fprintf(stderr, "usage: %s N\\n", argv[0]);\n        return 1;\n    }\n    long n = strtol(argv[1], NULL, 10);\n    for (long i = 0; i < n; ++i) printf("%ld\\n", i * i);\n    return 0;\n}\n""",
    """apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: brace-gateway\n  labels:\n    app: brace\nspec:\n  replicas: 3\n  template:\n    spec:\n      containers:\n        - name: gateway\n          image: ghcr.io/example/brace:0.1.0\n          ports:\n            - containerPort: 4000\n          resources:\n            limits: {cpu: "2", memory: 1Gi}\n""",
    """const users = await db.collection('users')\n  .find({ age: { $gte: 18 }, status: 'active' })\n  .sort({ createdAt: -1 })\n  .limit(20)\n  .toArray();\nconsole.log(`found ${users.length} users`);\n""",
]

STDLIB_MODULES = [
    "json.decoder",
    "textwrap",
    "shlex",
    "heapq",
    "bisect",
    "fnmatch",
    "colorsys",
    "calendar",
    "dataclasses",
    "functools",
    "string",
    "base64",
    "difflib",
    "argparse",
    "csv",
]


def _prose(rng: random.Random, lang: str, n: int) -> str:
    pool = PROSE[lang]
    sents = [rng.choice(pool) for _ in range(n)]
    sep = "" if lang in ("zh", "ja", "th") else " "
    paras = []
    while sents:
        k = rng.randint(1, 4)
        paras.append(sep.join(sents[:k]))
        sents = sents[k:]
    return "\n\n".join(paras)


def _stdlib_excerpt(rng: random.Random, name: str) -> str:
    module = __import__(name, fromlist=["_"])
    lines = inspect.getsource(module).splitlines()
    start = rng.randrange(0, max(1, len(lines) - 10))
    return "\n".join(lines[start : start + rng.randint(5, 80)]) + "\n"


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 10)))


def _json_value(rng: random.Random, depth: int) -> Any:
    r = rng.random()
    if depth > 2 or r < 0.3:
        return rng.choice(
            [
                rng.randint(-(10**6), 10**9),
                round(rng.uniform(-1000, 1000), rng.randint(1, 6)),
                rng.choice([True, False, None]),
                " ".join(_word(rng) for _ in range(rng.randint(1, 6))),
                rng.choice(PROSE["en"]),
                f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T10:{rng.randint(0, 59):02d}:00Z",
            ]
        )
    if r < 0.65:
        return {
            rng.choice(["id", "name", "user_id", "created_at", "items", "total", "status"])
            + ("_" + _word(rng) if rng.random() < 0.5 else ""): _json_value(rng, depth + 1)
            for _ in range(rng.randint(1, 6))
        }
    return [_json_value(rng, depth + 1) for _ in range(rng.randint(1, 5))]


def _numbers(rng: random.Random) -> str:
    kind = rng.randrange(6)
    if kind == 0:
        return " ".join(
            str(rng.randint(0, 10 ** rng.randint(1, 30))) for _ in range(rng.randint(3, 40))
        )
    if kind == 1:
        rows = [
            "| " + " | ".join(f"{rng.uniform(-1e6, 1e6):,.2f}" for _ in range(5)) + " |"
            for _ in range(rng.randint(3, 20))
        ]
        return "\n".join(rows)
    if kind == 2:
        return "\n".join(
            f"{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}-4{rng.getrandbits(12):03x}-"
            f"{rng.getrandbits(16):04x}-{rng.getrandbits(48):012x}"
            for _ in range(rng.randint(2, 20))
        )
    if kind == 3:
        return base64.b64encode(rng.randbytes(rng.randint(30, 600))).decode()
    if kind == 4:
        return "".join(rng.choice(string.digits) for _ in range(rng.randint(20, 400)))
    return ", ".join(
        f"+{rng.randint(1, 99)} {rng.randint(100, 999)} {rng.randint(1000000, 9999999)}"
        for _ in range(rng.randint(2, 15))
    )


def _mixed(rng: random.Random) -> str:
    parts = [
        f"# {rng.choice(PROSE['en'])[:40]}",
        _prose(rng, rng.choice(list(PROSE)), rng.randint(1, 3)),
        "```python\n" + _stdlib_excerpt(rng, rng.choice(STDLIB_MODULES)) + "```",
        "\n".join(f"- {rng.choice(PROSE['en'])}" for _ in range(rng.randint(2, 5))),
        "Emoji: " + "".join(rng.choice("😀🚀🔥✅❌🎉👍🌍💡📦") for _ in range(rng.randint(1, 12))),
        "→ ≤ ≥ ≠ ∑ ∞ “quoted” — ‘single’ … • ©",
    ]
    rng.shuffle(parts)
    return "\n\n".join(parts[: rng.randint(2, len(parts))])


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a given location.",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {
                        "type": "string",
                        "description": "The city and state, e.g. San Francisco, CA",
                    },
                    "unit": {
                        "type": "string",
                        "description": "The unit.",
                        "enum": ["celsius", "fahrenheit"],
                    },
                },
                "required": ["location"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search_orders",
            "description": "Search a customer's orders by status and date range",
            "parameters": {
                "type": "object",
                "properties": {
                    "customer_id": {"type": "string", "description": "The customer's id"},
                    "status": {
                        "type": "string",
                        "description": "Order status",
                        "enum": ["open", "shipped", "returned"],
                    },
                    "since": {"type": "string", "description": "ISO date"},
                },
            },
        },
    },
]


def _chat(rng: random.Random) -> dict[str, Any]:
    msgs: list[dict[str, Any]] = []
    if rng.random() < 0.8:
        msgs.append({"role": "system", "content": _prose(rng, "en", rng.randint(1, 4))})
    body: dict[str, Any] = {"model": "gpt-4o", "messages": msgs}
    if rng.random() < 0.4:
        body["tools"] = rng.sample(TOOLS, rng.randint(1, 2))
    for turn in range(rng.randint(1, 6)):
        lang = rng.choice(list(PROSE))
        user: dict[str, Any] = {"role": "user", "content": _prose(rng, lang, rng.randint(1, 5))}
        if rng.random() < 0.15:
            user["name"] = _word(rng)
        msgs.append(user)
        if "tools" in body and rng.random() < 0.5:
            calls = [
                {
                    "id": f"call_{turn}_{i}",
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "arguments": json.dumps(
                            {"location": rng.choice(["Paris", "Tokyo", "Lima, Peru"])}
                        ),
                    },
                }
                for i in range(rng.randint(1, 3))
            ]
            msgs.append({"role": "assistant", "content": None, "tool_calls": calls})
            for c in calls:
                msgs.append(
                    {
                        "role": "tool",
                        "tool_call_id": c["id"],
                        "content": json.dumps(_json_value(rng, 1), ensure_ascii=False),
                    }
                )
        msgs.append({"role": "assistant", "content": _prose(rng, lang, rng.randint(1, 6))})
    msgs.pop()  # end on the user's (or the tool results') turn
    return body


def generate() -> list[dict[str, Any]]:
    rng = random.Random(20240611)
    out: list[dict[str, Any]] = []

    def add(kind: str, **item: Any) -> None:
        out.append({"id": len(out), "kind": kind, **item})

    for lang in PROSE:
        for _ in range(9):
            add(f"prose_{lang}", text=_prose(rng, lang, rng.choice([1, 1, 2, 3, 6, 12, 30])))
    for _ in range(45):
        add("code_python", text=_stdlib_excerpt(rng, rng.choice(STDLIB_MODULES)))
    for snippet in CODE_SNIPPETS:
        add("code_other", text=snippet)
        add("code_other", text=snippet.replace("    ", "\t"))
    for _ in range(40):
        value = _json_value(rng, 0)
        indent = rng.choice([None, 2])
        add("json", text=json.dumps(value, indent=indent, ensure_ascii=rng.random() < 0.5))
    for _ in range(30):
        add("numbers", text=_numbers(rng))
    for _ in range(25):
        add("mixed", text=_mixed(rng))
    for _ in range(60):
        add("chat", body=_chat(rng))
    return out


# ----------------------------------------------------------------------------- references


def _references(args: argparse.Namespace) -> dict[str, Any]:
    from brace.context.tokens import load_encoding

    refs: dict[str, Any] = {}
    for name, short in (("o200k_base", "o200k"), ("cl100k_base", "cl100k")):
        enc = load_encoding(name)
        if enc is not None:
            refs[short] = lambda t, e=enc: len(e.encode_ordinary(t))
    if args.qwen:
        import tiktoken

        pat = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
        ranks = {
            base64.b64decode(tok): int(rank)
            for tok, rank in (
                line.split() for line in Path(args.qwen).read_bytes().splitlines() if line
            )
        }
        qwen = tiktoken.Encoding("qwen", pat_str=pat, mergeable_ranks=ranks, special_tokens={})
        refs["qwen"] = lambda t: len(qwen.encode_ordinary(t))
    try:
        import mistral_common
        from mistral_common.tokens.tokenizers.tekken import Tekkenizer

        path = Path(mistral_common.__file__).parent / "data" / "tekken_240911.json"
        tekken = Tekkenizer.from_file(str(path))
        refs["tekken"] = lambda t: len(tekken.encode(t, bos=False, eos=False))
    except ImportError:
        pass
    if args.claude:
        import tokenizers

        claude = tokenizers.Tokenizer.from_file(args.claude)
        refs["claude"] = lambda t: len(claude.encode(t).ids)
    return refs


def cookbook_count(body: dict[str, Any], encode: Any) -> int:
    """OpenAI's cookbook count (num_tokens_from_messages + num_tokens_for_tools), extended
    with content parts of text and tool calls as brace counts them."""
    n = 3
    for m in body["messages"]:
        n += 3
        for key, value in m.items():
            if key == "tool_calls":
                for c in value:
                    n += 3 + encode(c["function"]["name"]) + encode(c["function"]["arguments"])
            elif key in ("role", "content", "name") and isinstance(value, str):
                n += encode(value) + (1 if key == "name" else 0)
    tools = body.get("tools") or []
    if tools:
        for t in tools:
            f = t["function"]
            n += 7 + encode(f["name"] + ":" + f["description"].removesuffix("."))
            props = f["parameters"]["properties"]
            if props:
                n += 3
                for key, p in props.items():
                    n += 3
                    if "enum" in p:
                        n -= 3
                        for item in p["enum"]:
                            n += 3 + encode(item)
                    n += encode(f"{key}:{p['type']}:{p['description'].removesuffix('.')}")
        n += 12
    return n


def write(args: argparse.Namespace) -> None:
    refs = _references(args)
    print("references:", ", ".join(refs) or "none", file=sys.stderr)
    with OUT.open("w", encoding="utf-8") as f:
        for item in generate():
            if "text" in item:
                item["ref"] = {k: fn(item["text"]) for k, fn in refs.items()}
            elif "o200k" in refs:
                item["ref"] = {"o200k": cookbook_count(item["body"], refs["o200k"])}
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}", file=sys.stderr)


# ----------------------------------------------------------------------------- fitting

FAMILY_REF = {
    "openai": "o200k",
    "anthropic": "claude",
    "llama": "cl100k",
    "qwen": "qwen",
    "mistral": "tekken",
}


def _nnls(a: Any, b: Any) -> Any:
    """Non-negative least squares (Lawson-Hanson active set)."""
    import numpy as np

    n = a.shape[1]
    passive = np.zeros(n, dtype=bool)
    x = np.zeros(n)
    w = a.T @ (b - a @ x)
    for _ in range(3 * n):
        if passive.all() or w[~passive].max() <= 1e-10:
            break
        j = int(np.argmax(np.where(passive, -np.inf, w)))
        passive[j] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
            if (z[passive] > 0).all():
                x = z
                break
            neg = passive & (z <= 0)
            alpha = np.min(x[neg] / (x[neg] - z[neg]))
            x = x + alpha * (z - x)
            passive &= x > 1e-12
        w = a.T @ (b - a @ x)
    return x


def fit() -> None:
    import numpy as np

    from brace.context.tokens import FEATURES, text_features

    items = [json.loads(line) for line in OUT.read_text(encoding="utf-8").splitlines()]
    texts = [i for i in items if "text" in i]
    x = np.array([text_features(i["text"]) for i in texts], dtype=float)
    coefs: dict[str, Any] = {}
    for family, ref in FAMILY_REF.items():
        y = np.array([i["ref"][ref] for i in texts], dtype=float)
        w = 1.0 / np.maximum(y, 20.0)  # relative error, small texts damped
        coefs[family] = _nnls(x * w[:, None], y * w)
    coefs["other"] = np.max(np.stack(list(coefs.values())), axis=0)
    held_out = {}
    for family, ref in FAMILY_REF.items():  # 2-fold: fit on even ids, measure on odd
        y = np.array([i["ref"][ref] for i in texts], dtype=float)
        w = 1.0 / np.maximum(y, 20.0)
        even = np.arange(len(texts)) % 2 == 0
        c = _nnls(x[even] * w[even, None], y[even] * w[even])
        odd = ~even & (y >= 20)
        rel = np.abs(np.maximum(1, np.round(x[odd] @ c)) - y[odd]) / y[odd]
        held_out[family] = (rel.mean(), np.quantile(rel, 0.95), rel.max())
    # the "coef" of each family in src/brace/context/coefficients.json
    print(
        json.dumps(
            {
                f: dict(zip(FEATURES, (round(float(v), 4) for v in c), strict=True))
                for f, c in coefs.items()
            }
        )
    )
    for family, c in coefs.items():
        ref = FAMILY_REF.get(family)
        refs = [ref] if ref else list(FAMILY_REF.values())
        worst = 0.0
        rels = []
        for r in refs:
            y = np.array([i["ref"][r] for i in texts], dtype=float)
            est = np.maximum(1, np.round(x @ np.round(c, 4)))
            big = y >= 20
            rel = np.abs(est - y)[big] / y[big]
            if family == "other":
                rel = np.maximum(0, (y - est))[big] / y[big]  # only underestimates matter
            rels.extend(rel.tolist())
            worst = max(worst, float(rel.max()))
        rels_a = np.array(rels)
        line = f"{family:9s} mean {rels_a.mean():.3f}  p95 {np.quantile(rels_a, 0.95):.3f}  max {worst:.3f}"
        if family in held_out:
            line += "   held-out: mean {:.3f}  p95 {:.3f}  max {:.3f}".format(*held_out[family])
        print(line)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--qwen", help="path of qwen.tiktoken (from the dashscope package)")
    p.add_argument("--claude", help="path of the legacy Claude tokenizer.json (anthropic<0.39)")
    p.add_argument("--fit", action="store_true", help="fit the estimates on the existing corpus")
    args = p.parse_args()
    if args.fit:
        fit()
    else:
        write(args)


if __name__ == "__main__":
    main()
