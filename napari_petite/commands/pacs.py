"""``petite pacs echo | find | get | send``: talk to a PACS (``napari_petite.io.pacs``).

The PACS is named by a settings file (``--config``, else ``$PETITE_PACS_CONFIG``, else
``~/.config/napari-petite/pacs.json``) and options that override it; nothing about it is
built in.
"""

from __future__ import annotations

from napari_petite.commands import _options as opt


def _settings_options(parser) -> None:
    group = parser.add_argument_group("PACS (default: the settings file)")
    group.add_argument("--config", metavar="FILE", default=None,
                       help="JSON settings file (host, port, called_aet, calling_aet, "
                       "timeout_s)")
    group.add_argument("--host", default=None)
    group.add_argument("--port", type=int, default=None)
    group.add_argument("--called-aet", default=None, metavar="AET",
                       help="the PACS's AE title")
    group.add_argument("--calling-aet", default=None, metavar="AET",
                       help="our AE title (default PETITE)")
    group.add_argument("--timeout", type=float, default=None, metavar="S",
                       help="seconds to wait for the PACS (default 30)")
    parser.add_argument("--json", action="store_true",
                        help="print one machine-readable JSON object on stdout")


def register(sub) -> None:
    parser = sub.add_parser("pacs", help="echo, search, retrieve from and send to a PACS",
                            description="DICOM networking with a PACS (pynetdicom): C-ECHO, "
                            "C-FIND, C-GET and C-STORE.")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    echo = verbs.add_parser("echo", help="check that the PACS answers and accepts us")
    find = verbs.add_parser("find", help="search patients, studies or series")
    find.add_argument("--level", choices=("patient", "study", "series"), default="series")
    find.add_argument("--patient-id", default=None, help="PatientID (wildcards * ? allowed)")
    find.add_argument("--patient-name", default=None, help="PatientName (wildcards allowed)")
    find.add_argument("--study-uid", default=None)
    find.add_argument("--study-date", default=None, help="YYYYMMDD or a range YYYYMMDD-YYYYMMDD")
    find.add_argument("--modality", default=None, help="series modality, e.g. PT")
    get = verbs.add_parser("get", help="retrieve one series into a folder (C-GET)")
    get.add_argument("--study-uid", required=True)
    get.add_argument("--series-uid", required=True)
    get.add_argument("--out", required=True, metavar="DIR", help="folder to create")
    get.add_argument("--overwrite", action="store_true")
    send = verbs.add_parser("send", help="send DICOM files or series folders (C-STORE)")
    send.add_argument("paths", nargs="+", metavar="PATH", help="DICOM files or folders")
    for verb in (echo, find, get, send):
        _settings_options(verb)
        verb.set_defaults(func=run)


def run(args) -> int:
    from napari_petite.io import pacs

    settings = pacs.load_settings(args.config, host=args.host, port=args.port,
                                  called_aet=args.called_aet, calling_aet=args.calling_aet,
                                  timeout_s=args.timeout)
    where = settings.describe()
    if args.verb == "echo":
        pacs.echo(settings)
        opt.emit(args, {"pacs": where, "echo": "ok"}, f"{where} answered the echo of "
                 f"{settings.calling_aet}.")
    elif args.verb == "find":
        query = {"PatientID": args.patient_id, "PatientName": args.patient_name,
                 "StudyInstanceUID": args.study_uid, "StudyDate": args.study_date}
        if args.level == "series":
            query["Modality"] = args.modality
        rows = pacs.find(settings, args.level, **query)
        lines = [" | ".join(v for v in row.values() if v) for row in rows]
        opt.emit(args, {"pacs": where, "level": args.level, "matches": rows},
                 "\n".join([f"{len(rows)} {args.level} match(es) on {where}", *lines]))
    elif args.verb == "get":
        folder = pacs.get(settings, args.out, study_uid=args.study_uid,
                          series_uid=args.series_uid, overwrite=args.overwrite)
        n = len(list(folder.iterdir()))
        opt.emit(args, {"pacs": where, "folder": str(folder), "files": n},
                 f"retrieved {n} file(s) of series {args.series_uid} into {folder}")
    else:
        n = pacs.send(settings, args.paths)
        opt.emit(args, {"pacs": where, "sent": n}, f"sent {n} file(s) to {where}")
    return 0
