"""Each served model's command set, in one table the servers and the driver tests share.

Headers follow the programming manuals' notation (see :mod:`~dwlab.sim.virtual_lab.scpi`);
a header a model lacks is answered with -113 "Undefined header", as the real instrument
answers it. ``*RST`` restores every ``default`` (every output off).
"""

from __future__ import annotations

from typing import Any

from dwlab.sim.virtual_lab.scpi import Command, CommandSet


def _setting(header: str, key: str | None, default: str = "0", **kw: Any) -> Command:
    return Command(header, key, default, **kw)


def _query(header: str, action: str) -> Command:
    return Command(header, kind="query", action=action)


def _event(header: str, action: str | None = None) -> Command:
    return Command(header, kind="event", action=action)


SYSTEM = (
    _query(":SYSTem:ERRor[:NEXT]", "next_error"),
    _query(":SYSTem:ERRor:COUNt", "error_count"),
    _query(":SYSTem:VERSion", "scpi_version"),
    _event(":SYSTem:BEEPer[:IMMediate]", "accept"),
    _event(":STATus:PRESet"),
    _setting(":STATus:OPERation:ENABle", "operation_enable", number=True),
    _setting(":STATus:QUEStionable:ENABle", "questionable_enable", number=True),
)
"""Every model's SYSTem and STATus subset."""

_PULSER_CHANNEL = (
    _setting("[:SOURce]:VOLTage#[:LEVel][:IMMediate]:HIGH", "high{ch}", "0.1", number=True,
             bounds=(-10.0, 10.0)),
    _setting("[:SOURce]:VOLTage#[:LEVel][:IMMediate]:LOW", "low{ch}", "0", number=True,
             bounds=(-10.0, 10.0)),
    _setting("[:SOURce]:VOLTage#[:LEVel][:IMMediate][:AMPLitude]", None, number=True,
             bounds=(0.0, 20.0), action="amplitude"),
    _setting("[:SOURce]:VOLTage#[:LEVel][:IMMediate]:OFFSet", None, number=True,
             bounds=(-10.0, 10.0), action="offset"),
    _setting("[:SOURce]:PULSe:WIDTh#", "width{ch}", "1E-07", number=True, bounds=(1e-9, 1e3)),
    _setting("[:SOURce]:PULSe:DCYCle#", "dcycle{ch}", "10", number=True, bounds=(0.001, 99.9)),
    _setting("[:SOURce]:PULSe:DELay#", "delay{ch}", "0", number=True, bounds=(0.0, 1e3)),
    _setting("[:SOURce]:PULSe:HOLD#", "hold{ch}", "WIDT", choices=("WIDTh", "DCYCle",
                                                                  "TDELay")),
    _setting(":OUTPut#[:STATe]", "output{ch}", boolean=True, action="output"),
    _setting(":OUTPut#:POLarity", "polarity{ch}", "NORM", choices=("NORMal", "INVerted")),
)
"""The 81100-family channel settings both pulse generators share."""

AGILENT_81110A = CommandSet("Agilent Technologies", "81110A", (
    *_PULSER_CHANNEL, *SYSTEM,
    _setting("[:SOURce]:PULSe:PERiod", "period", "1E-06", number=True, bounds=(3.03e-9, 999.5e-3)),
    _setting("[:SOURce]:PULSe:TRANsition#[:LEADing]", "leading{ch}", "2E-09", number=True,
             bounds=(0.8e-9, 1e-3)),
    _setting("[:SOURce]:PULSe:TRANsition#:TRAiling", "trailing{ch}", "2E-09", number=True,
             bounds=(0.8e-9, 1e-3)),
    _setting("[:SOURce]:HOLD", "hold_level", "VOLT", choices=("VOLTage", "CURRent")),
    _setting(":OUTPut#:IMPedance[:INTernal]", "impedance{ch}", "50", number=True),
    _setting(":OUTPut#:IMPedance:EXTernal", "load{ch}", "50", number=True),
    _setting(":TRIGger:COUNt", "count1", "1", number=True, bounds=(1, 65536)),
    _setting(":TRIGger:SOURce", "trigger_source", "IMM",
             choices=("IMMediate", "INTernal", "EXTernal")),
    _setting(":ARM:SOURce", "arm", "IMM", choices=("IMMediate", "EXTernal", "MANual")),
))

KEYSIGHT_81160A = CommandSet("Agilent Technologies", "81160A", (
    *_PULSER_CHANNEL, *SYSTEM,
    _setting("[:SOURce]:FUNCtion#[:SHAPe]", "function{ch}", "SIN",
             choices=("SINusoid", "SQUare", "RAMP", "PULSe", "NOISe", "DC", "USER")),
    _setting("[:SOURce]:FUNCtion#:USER", "user{ch}", "VOLATILE"),
    _setting("[:SOURce]:FUNCtion#:SQUare:DCYCle", "square{ch}", "50", number=True),
    _setting("[:SOURce]:FUNCtion#:RAMP:SYMMetry", "symmetry{ch}", "100", number=True),
    _setting("[:SOURce]:FUNCtion#:PULSe:TRANsition[:LEADing]", "leading{ch}", "2E-09",
             number=True, bounds=(1e-9, 1e3)),
    _setting("[:SOURce]:FREQuency#[:CW]", "frequency{ch}", "1000000", number=True,
             bounds=(1e-6, 500e6)),
    _setting("[:SOURce]:PHASe#[:ADJust]", "phase{ch}", "0", number=True),
    _setting("[:SOURce]:VOLTage#:UNIT", "unit{ch}", "VPP", choices=("VPP", "VRMS", "DBM")),
    _setting("[:SOURce]:VOLTage#:LIMit[:STATe]", "limit{ch}", boolean=True),
    _setting("[:SOURce]:VOLTage#:LIMit:HIGH", "limit_high{ch}", "5", number=True),
    _setting("[:SOURce]:VOLTage#:LIMit:LOW", "limit_low{ch}", "-5", number=True),
    _setting("[:SOURce]:PULSe:PERiod#", "period{ch}", "1E-06", number=True, bounds=(2e-9, 1e6)),
    _setting(":OUTPut#:LOAD", "load{ch}", "50", number=True, bounds=(0.3, 1e6)),
    _setting(":OUTPut:TRIGger", "trigger_out", boolean=True),
    _setting("[:SOURce]:BURSt#:STATe", "burst{ch}", boolean=True),
    _setting("[:SOURce]:BURSt#:MODE", "burst_mode{ch}", "TRIG", choices=("TRIGgered",
                                                                         "GATed")),
    _setting("[:SOURce]:BURSt#:INTernal:PERiod", "burst_period{ch}", "0.01", number=True),
    _setting("[:SOURce]:BURSt#:NCYCles", "burst_cycles{ch}", "2", number=True,
             bounds=(2, 2.147483647e9)),
    _setting(":TRACe:CHANnel#", "coupling", boolean=True),
    _setting(":TRIGger#:COUNt", "count{ch}", "1", number=True, bounds=(1, 2.147483647e9)),
    _setting(":TRIGger:SOURce", "trigger_source", "IMM",
             choices=("IMMediate", "EXTernal", "BUS")),
    _setting(":ARM:SOURce#", "arm{ch}", "IMM",
             choices=("IMMediate", "INTernal2", "EXTernal", "MANual")),
    _setting(":DISPlay:TEXT", "display", '""'),
    _event(":DISPlay:TEXT:CLEar"),
    _query(":DATA#:NVOLatile:FREE", "free_slots"),
    _query(":DATA#:NVOLatile:CATalog", "catalog"),
    _event(":DATA#:DELete", "delete_waveform"),
    _event(":APPLy#:DC", "apply_function"),
    _event(":APPLy#:NOISe", "apply_function"),
    _event(":APPLy#:PULSe", "apply_function"),
    _event(":APPLy#:SINusoid", "apply_function"),
    _event(":APPLy#:SQUare", "apply_function"),
    _event(":APPLy#:USER", "apply_function"),
))


def _sense(function: str, range_default: str) -> tuple[Command, ...]:
    """The range, integration and filter settings of one measured quantity."""
    f = function[:4].lower()
    where = f"[:SENSe]:{function}"
    return (
        _setting(f"{where}[:DC]:RANGe[:UPPer]", f"{f}_range", range_default, number=True),
        _setting(f"{where}[:DC]:RANGe:AUTO", f"{f}_autorange", "1", boolean=True),
        _setting(f"{where}[:DC]:NPLCycles", f"{f}_nplc", "1", number=True, bounds=(0.01, 10)),
        _setting(f"{where}[:DC]:AVERage[:STATe]", f"{f}_filter", boolean=True),
        _setting(f"{where}[:DC]:AVERage:TCONtrol", f"{f}_filter_type", "REP",
                 choices=("REPeat", "MOVing")),
        _setting(f"{where}[:DC]:AVERage:COUNt", f"{f}_filter_count", "10", number=True,
                 bounds=(1, 100)),
    )


def _source(function: str, limit: str, limit_default: str) -> tuple[Command, ...]:
    """The level, range, delay and limit of one sourced quantity."""
    f = function[:4].lower()
    where = f"[:SOURce]:{function}"
    return (
        _setting(f"{where}[:LEVel][:IMMediate][:AMPLitude]", f"{f}_level", "0", number=True,
                 bounds=(-210.0, 210.0)),
        _setting(f"{where}:RANGe", f"{f}_source_range", "0.2", number=True),
        _setting(f"{where}:RANGe:AUTO", f"{f}_source_autorange", "1", boolean=True),
        _setting(f"{where}:DELay", f"{f}_delay", "0", number=True, bounds=(0.0, 999.9999)),
        _setting(f"{where}:DELay:AUTO", f"{f}_delay_auto", "1", boolean=True),
        _setting(f"{where}:{limit}[:LEVel]", f"{f}_limit", limit_default, number=True),
    )


_OUTPUT_MODES = ("HIMPedance", "NORMal", "ZERO", "GUARd")
_SMU_COMMON = (
    *SYSTEM,
    _setting("[:SOURce]:FUNCtion[:MODE]", "source", "VOLT", choices=("VOLTage", "CURRent")),
    _setting("[:SENSe]:FUNCtion[:ON]", "sense", "CURR",
             choices=("CURRent", "VOLTage", "RESistance")),
    *_sense("CURRent", "1E-04"), *_sense("VOLTage", "21"), *_sense("RESistance", "2E+05"),
    _setting(":OUTPut[:STATe]", "output", boolean=True, action="output"),
    _query(":READ", "read"),
    _query(":MEASure[:CURRent]", "measure_current"),
    _query(":MEASure:VOLTage", "measure_voltage"),
    _query(":MEASure:RESistance", "measure_resistance"),
    _setting(":TRACe:POINts", "buffer_points", "100", number=True),
    _event(":TRACe:CLEar", "clear_buffer"),
    _query(":TRACe:DATA", "buffer_data"),
    _event(":INITiate[:IMMediate]", "initiate"),
    _event(":ABORt"),
    _setting(":STATus:MEASurement:ENABle", "measurement_enable", number=True),
    _setting(":FORMat[:DATA]", "data_format", "ASC", choices=("ASCii", "REAL", "SREal")),
    _setting(":ROUTe:TERMinals", "terminals", "FRON", choices=("FRONt", "REAR")),
)
"""What both source-meters share."""

KEITHLEY_2450 = CommandSet("KEITHLEY INSTRUMENTS", "MODEL 2450", (
    *_SMU_COMMON,
    *_source("VOLTage", "ILIMit", "1.05E-04"), *_source("CURRent", "VLIMit", "21"),
    _setting("[:SENSe]:CURRent[:DC]:RSENse", "curr_rsense", boolean=True),
    _setting("[:SENSe]:VOLTage[:DC]:RSENse", "volt_rsense", boolean=True),
    _setting("[:SENSe]:RESistance:RSENse", "res_rsense", boolean=True),
    _setting(":OUTPut:CURRent:SMODe", "curr_off_mode", "NORM", choices=_OUTPUT_MODES),
    _setting(":OUTPut:VOLTage:SMODe", "volt_off_mode", "NORM", choices=_OUTPUT_MODES),
    _query(":TRACe:STATistics:AVERage", "buffer_mean"),
    _query(":TRACe:STATistics:MAXimum", "buffer_max"),
    _query(":TRACe:STATistics:MINimum", "buffer_min"),
    _query(":TRACe:STATistics:STDDev", "buffer_std"),
))
"""The 2450 in its SCPI command set (2400-style ``:TRACe:FEED`` is not among them)."""

KEITHLEY_2400 = CommandSet("KEITHLEY INSTRUMENTS INC.", "MODEL 2400", (
    *_SMU_COMMON,
    *_source("VOLTage", "ILIMit", "1.05E-04")[:3], *_source("CURRent", "VLIMit", "21")[:3],
    _setting("[:SENSe]:CURRent[:DC]:PROTection[:LEVel]", "volt_limit", "1.05E-04", number=True,
             bounds=(-1.05, 1.05)),
    _setting("[:SENSe]:VOLTage[:DC]:PROTection[:LEVel]", "curr_limit", "21", number=True,
             bounds=(-210, 210)),
    _setting("[:SENSe]:RESistance:MODE", "res_mode", "MAN", choices=("MANual", "AUTO")),
    _event("[:SENSe]:FUNCtion[:ON]:ALL", "sense_all"),
    _setting("[:SENSe]:AVERage[:STATe]", "filter", boolean=True),
    _setting("[:SENSe]:AVERage:TCONtrol", "filter_type", "REP", choices=("REPeat", "MOVing")),
    _setting("[:SENSe]:AVERage:COUNt", "filter_count", "10", number=True, bounds=(1, 100)),
    _setting("[:SOURce]:DELay", "source_delay", "0", number=True),
    _setting("[:SOURce]:DELay:AUTO", "source_delay_auto", "1", boolean=True),
    _setting("[:SOURce]:CLEar:AUTO", "auto_off", boolean=True),
    _event("[:SOURce]:CLEar[:IMMediate]", "output_off"),
    _setting(":SYSTem:RSENse", "rsense", boolean=True),
    _setting(":SYSTem:AZERo[:STATe]", "autozero", "ON", choices=("ON", "OFF", "ONCE", "1",
                                                                 "0")),
    _setting(":SYSTem:LFRequency", "line_frequency", "60", number=True),
    _setting(":SYSTem:LFRequency:AUTO", "line_frequency_auto", "1", boolean=True),
    _setting(":OUTPut:SMODe", "off_mode", "NORM", choices=_OUTPUT_MODES),
    _setting(":FORMat:ELEMents[:SENSe1]", "elements", "VOLT,CURR,RES,TIME,STAT"),
    _setting(":TRACe:FEED", "feed", "SENS", choices=("SENSe", "SENSe1", "CALCulate1",
                                                                 "CALCulate2")),
    _setting(":TRACe:FEED:CONTrol", "feed_control", "NEV", choices=("NEXT", "NEVer")),
    _setting(":CALCulate3:FORMat", "statistic", "MEAN",
             choices=("MEAN", "SDEViation", "MAXimum", "MINimum", "PKPK")),
    _query(":CALCulate3:DATA", "statistic_data"),
    _event(":TRIGger:CLEar"),
    _setting(":TRIGger:COUNt", "trigger_count", "1", number=True, bounds=(1, 2500)),
    _setting(":TRIGger:DELay", "trigger_delay", "0", number=True, bounds=(0, 999.9999)),
    _setting(":TRIGger:SOURce", "trigger_source", "IMM", choices=("IMMediate", "TLINk")),
    _setting(":TRIGger:OUTPut", "trigger_output", "NONE",
             choices=("SOURce", "DELay", "SENSe", "NONE")),
    _setting(":TRIGger:ILINe", "trigger_iline", "1", number=True, bounds=(1, 4)),
    _setting(":TRIGger:OLINe", "trigger_oline", "2", number=True, bounds=(1, 4)),
    _setting(":ARM:COUNt", "arm_count", "1", number=True, bounds=(1, 2500)),
    _setting(":ARM:TIMer", "arm_timer", "0.1", number=True),
    _setting(":ARM:SOURce", "arm_source", "IMM",
             choices=("IMMediate", "TLINk", "TIMer", "MANual", "BUS")),
    _setting(":ARM:OUTPut", "arm_output", "NONE", choices=("TENTer", "TEXit", "NONE")),
    _setting(":ARM:ILINe", "arm_iline", "1", number=True, bounds=(1, 4)),
    _setting(":ARM:OLINe", "arm_oline", "2", number=True, bounds=(1, 4)),
    _setting(":DISPlay:ENABle", "display", "1", boolean=True),
))
"""The 2400's commands (its compliance is ``:SENSe:<function>:PROTection``)."""

PULSERS = {"agilent81110a": AGILENT_81110A, "keysight81160a": KEYSIGHT_81160A}
SOURCE_METERS = {"keithley2450": KEITHLEY_2450, "keithley2400": KEITHLEY_2400}

KEITHLEY_707B = (
    ("Keithley Instruments Inc.", "Model 707B"),
    # (statement pattern, what it does); a line is statements separated by spaces
    (r'channel\.(?P<op>close|open|exclusiveclose)\("(?P<chans>[^"]*)"\)', "switch"),
    (r'print\(channel\.getclose\("allslots"\)\)', "print_closed"),
    (r"print\(errorqueue\.count\)", "print_error_count"),
    (r"errorcode, message = errorqueue\.next\(\) print\(errorcode, message\)", "print_next_error"),
    (r"errorqueue\.clear\(\)", "clear_errors"),
    (r"reset\(\)|\*RST", "reset"),
    (r"\*CLS", "clear_errors"),
    (r"\*OPC\?", "print_one"),
    (r"opc\(\)|\*OPC|waitcomplete\(\)|\*WAI", "nothing"),
    (r"print\((?P<number>-?\d+(?:\.\d*)?)\)", "print_number"),
    (r"\*IDN\?", "print_idn"),
)
"""The 707B's TSP subset: identity, then statements (anything else: -285 syntax error)."""
