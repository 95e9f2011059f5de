; Inno Setup script: a per-user Windows installer for the PyInstaller build in dist\pyme-desk.
; Build:  iscc installer\pyme-desk.iss   (after: pyinstaller installer\pyme-desk.spec)
#define AppName "PYME Desk"
#define AppVersion "0.1.0"

[Setup]
AppId={{6F1C2D2E-4B7A-4C55-9B1E-5D0D2C7A8E31}
AppName={#AppName}
AppVersion={#AppVersion}
DefaultDirName={localappdata}\Programs\PYME Desk
DefaultGroupName={#AppName}
PrivilegesRequired=lowest
OutputDir=..\dist
OutputBaseFilename=pyme-desk-{#AppVersion}-setup
SetupIconFile=..\resources\pyme-desk.ico
UninstallDisplayIcon={app}\pyme-desk.exe
Compression=lzma2
SolidCompression=yes

[Files]
Source: "..\dist\pyme-desk\*"; DestDir: "{app}"; Flags: recursesubdirs ignoreversion

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\pyme-desk.exe"; IconFilename: "{app}\resources\pyme-desk.ico"
Name: "{userdesktop}\{#AppName}"; Filename: "{app}\pyme-desk.exe"; IconFilename: "{app}\resources\pyme-desk.ico"; Tasks: desktopicon

[Tasks]
Name: "desktopicon"; Description: "Create a desktop shortcut"; GroupDescription: "Shortcuts:"

[Run]
Filename: "{app}\pyme-desk.exe"; Description: "Start {#AppName}"; Flags: nowait postinstall skipifsilent
